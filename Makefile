# The README's verbs. Each target does all of its own set-up on a fresh Debian/Ubuntu machine:
# system packages (softhsm2, postgresql), the virtualenv, Python dependencies and generated code.

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

.PHONY: run test lint typecheck unit protos protos-check bench system-deps venv clean

## make run: start the appliance on embedded dev defaults (SoftHSM token + dev CSCA/DSC on first run)
run: system-deps $(STAMP)
	$(VENV)/bin/signer serve --config $(CONFIG)

## make test: the whole suite: generated-code check, lint, types, unit and integration tests
test: system-deps $(STAMP) protos-check lint typecheck
	$(PY) -m pytest

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

## system-deps: softhsm2, p11-kit (a network HSM in the fault tests) and postgresql (the ledger
## tests' real server) from apt when missing
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
system-deps:
	@missing=""; \
	command -v softhsm2-util >/dev/null 2>&1 || missing="$$missing softhsm2"; \
	command -v p11-kit >/dev/null 2>&1 || missing="$$missing p11-kit"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "missing system packages:$$missing: installing them with apt-get"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) $$missing; \
	fi

venv: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache build *.egg-info

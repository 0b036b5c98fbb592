# The two entry points the README quotes: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: deps run test lint typecheck layers unit venv bench clean

# Debian packages: make and python3-venv (the sidecar's interpreter outside /root);
# iproute2, iptables, util-linux: pods as network namespaces with interception;
# openssl: independent chain checks in the CA tests; tcpdump, curl: end-to-end tests.
DEBIAN_PACKAGES := make python3-venv iproute2 iptables util-linux openssl tcpdump curl

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## deps: install the Debian packages the mesh and its tests need (root, apt)
deps:
	@if command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	else echo "deps: no apt-get here; install: $(DEBIAN_PACKAGES)"; fi

## run: the bookstore demo on the local runtime (root), with a live view; `osm down` ends it
run: $(STAMP)
	$(BIN)/osm demo

## test: lint, type-check, check the layering, then run the test suite
test: lint typecheck layers unit

lint: $(STAMP)
	$(BIN)/ruff check osm tests bench
	$(BIN)/ruff format --check osm tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# pytest exits 5 when it collected nothing; that is not a failure of the code.
unit: $(STAMP)
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

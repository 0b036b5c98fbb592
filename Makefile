# The two entry points the README quotes: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: deps run test lint typecheck layers unit compiled test-compiled venv bench clean \
	images images-check dashboard-vendor

# Debian packages: make and python3-venv (the sidecar's interpreter outside /root);
# iproute2, iptables, util-linux: pods as network namespaces with interception;
# openssl: independent chain checks in the CA tests; tcpdump, curl: end-to-end tests;
# kubernetes-client (only where no kubectl is installed): kubectl drives the API server in
# the integration tests;
# gcc, libc6-dev, python3-dev: mypyc compiles the sidecar's hot modules (setup.py) for the
# pods' /usr/bin/python3 and for `make test-compiled`;
# prometheus: the mesh's metrics (local mode runs it as a pod; promtool checks queries);
# chromium, chromium-driver: the dashboard's browser tests (selenium, no browser download).
DEBIAN_PACKAGES := make python3-venv iproute2 iptables util-linux openssl tcpdump curl \
	gcc libc6-dev python3-dev prometheus chromium chromium-driver

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
	  command -v kubectl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends kubernetes-client >/dev/null; \
	else echo "deps: no apt-get here; install: $(DEBIAN_PACKAGES)"; fi

## run: the bookstore demo on the local runtime (root), with a live view; `osm down` ends it
run: $(STAMP)
	$(BIN)/osm demo

## test: lint, type-check, check the layering, then run the test suite (pure Python, then
## the sidecar's tests again against its mypyc-compiled build)
test: lint typecheck layers unit test-compiled

lint: $(STAMP)
	$(BIN)/ruff check osm tests bench images setup.py
	$(BIN)/ruff format --check osm tests bench images setup.py

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy images

layers: $(STAMP)
	$(BIN)/lint-imports

# pytest exits 5 when it collected nothing; that is not a failure of the code.
unit: $(STAMP)
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

# The project built as pods get it (setup.py: the hot modules compiled by mypyc), installed
# into COMPILED, apart from the source tree; OSM_REQUIRE_COMPILED makes a fallback to pure
# Python an error. `bench/dataplane.py --sidecar-variant $(COMPILED)` runs it too.
COMPILED := $(VENV)/compiled
SOURCES := setup.py pyproject.toml README.md $(shell find osm -name '*.py')

# The stamp gets the time of the copy, so an edit made while pip builds triggers a rebuild.
$(COMPILED)/.built: $(STAMP) $(SOURCES)
	rm -rf $(COMPILED) && mkdir -p $(COMPILED)
	copied=$$(date +%s) && source=$$(mktemp -d) && \
	  cp -r setup.py pyproject.toml README.md osm "$$source" && \
	  find "$$source" -name __pycache__ -prune -exec rm -rf {} + && \
	  OSM_REQUIRE_COMPILED=1 $(BIN)/pip install -q --no-deps --target $(COMPILED) "$$source" && \
	  touch -d @$$((copied - 1)) $@; rc=$$?; rm -rf "$$source"; exit $$rc

compiled: $(COMPILED)/.built

# The sidecar's tests in-process against the compiled modules (e2e tests already run the
# pods' compiled build from /opt/osm/venv).
COMPILED_TESTS := tests/unit/proxy tests/integration/test_proxy_fast_path.py \
	tests/integration/test_proxy_fuzz.py tests/integration/test_proxy_mesh.py

test-compiled: $(COMPILED)/.built
	$(BIN)/pytest -q --compiled $(COMPILED) $(COMPILED_TESTS)

# The dashboard page's front-end libraries, pinned in osm/dashboard/web/package.json and its
# lock file: `npm ci` there, then the distributed files copied into osm/dashboard/static/vendor
# with MANIFEST.json (package, version, sha256 each). The vendored files are committed, so
# pods and pip installs never need npm; run this only to change a library's version.
DASHBOARD_WEB := osm/dashboard/web

## dashboard-vendor: re-vendor the dashboard's pinned front-end libraries (needs node and npm)
dashboard-vendor:
	cd $(DASHBOARD_WEB) && npm ci --ignore-scripts --no-audit --no-fund && node vendor.mjs

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build

# Container images (images/README.md): built with mmdebstrap, buildah and skopeo, no Docker and
# no registry; `images` installs these Debian packages itself when missing (not `deps`):
# mmdebstrap, buildah, skopeo: a Debian root, the images, the OCI archives; podman, runc: run
# them (images-check); gcc, libc6-dev, python3-dev: the sidecar's modules compiled by mypyc for
# Debian's python3, which the images run.
IMAGES_DEBIAN_PACKAGES := mmdebstrap buildah podman skopeo runc python3 gcc libc6-dev python3-dev
IMAGES_REGISTRY ?= osm-py
IMAGES_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGES_OUT ?= dist/images
# Any Python 3.11 whose pip is 22.3+ (pip --python); the images' own interpreter is Debian's.
IMAGES_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)

## images: build the controller, injector, init and sidecar images as OCI archives in dist/images
images:
	@missing=$$(for p in $(IMAGES_DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "images: apt-get install" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; fi
	$(IMAGES_PYTHON) images/build.py --registry $(IMAGES_REGISTRY) --tag $(IMAGES_TAG) \
	  --out $(IMAGES_OUT) --python $(IMAGES_PYTHON) >/dev/null

## images-check: run each image with podman (network none) and check it starts and is healthy
images-check:
	$(IMAGES_PYTHON) images/check.py --out $(IMAGES_OUT)

# The two entry points the README quotes: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck layers unit venv bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

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

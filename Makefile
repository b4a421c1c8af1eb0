# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: build .venv and run the main job on the embedded default (emulator + demo tenant)
demo: $(STAMP)
	$(BIN)/m365sync demo --scenario samples/tenants/contoso.yaml --store sqlite:///m365sync-demo.db

## test: build .venv with the dev extra and run every test suite, slow ones included
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-fast: skip the suites marked slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## bench: print the benchmark figures (not pass/fail)
bench: $(STAMP)
	$(BIN)/python benchmarks/emulator_speed.py

clean:
	rm -rf $(VENV) .pytest_cache

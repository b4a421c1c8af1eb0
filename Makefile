# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the tracker's modules compiled with mypyc (hatch_build.py); connector/_native.py runs them only while they match
NATIVE := connector/tracking/native.json
NATIVE_SRC := connector/tracking/tracker.py connector/tracking/signals.py connector/tracking/parties.py connector/_native.py hatch_build.py

.PHONY: demo test test-fast bench compile clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	M365SYNC_COMPILE=0 $(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## compile: build the tracker's C extensions again (after editing its modules; make test and make demo do it)
compile: $(NATIVE)

$(NATIVE): $(STAMP) $(NATIVE_SRC)
	$(BIN)/python hatch_build.py || echo "m365sync: not compiled; the tracker runs as pure Python"

## demo: build .venv and run the main job on the embedded default (emulator + demo tenant)
demo: $(STAMP) $(NATIVE)
	$(BIN)/m365sync demo --scenario samples/tenants/contoso.yaml --store sqlite:///m365sync-demo.db

## test: build .venv with the dev extra and run every test suite, slow ones included
test: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest -q

## test-fast: skip the suites marked slow
test-fast: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest -q -m "not slow"

## bench: print the benchmark figures (not pass/fail)
bench: $(STAMP)
	$(BIN)/python benchmarks/emulator_speed.py

clean:
	rm -rf $(VENV) .pytest_cache $(NATIVE) connector/tracking/*.so

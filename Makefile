# Two commands do all set-up on a fresh machine with only Python 3.11:
#   make demo   builds the offline demo dataset and runs apir's main job on it
#   make test   runs the test suite
# GPU users: `make demo TORCH=torch` (or a CUDA wheel spec) instead of the CPU build.
PY ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.apir-installed
DEMO ?= demo_out

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/apir data demo $(DEMO)/data --size 256 --seed 0 --force
	$(BIN)/apir data check $(DEMO)/data
	$(BIN)/apir data sheet $(DEMO)/data -o $(DEMO)/contact_sheet.png --degradation blind
	@echo "demo: dataset in $(DEMO)/data, contact sheet in $(DEMO)/contact_sheet.png"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache

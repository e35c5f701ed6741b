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
# The demo evaluates every method on the same 3 test images per category (CBM3D takes seconds each).
EVAL ?= --degradation paper --max-per-category 3

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	@echo "== 1/6 demo dataset (MVTec AD layout, built from images inside scikit-image)"
	$(BIN)/apir data demo $(DEMO)/data --size 256 --seed 0 --force
	$(BIN)/apir data check $(DEMO)/data
	$(BIN)/apir data sheet $(DEMO)/data -o $(DEMO)/contact_sheet.png --degradation blind
	@echo "== 2/6 train the paper's RCAN for 3 minutes on the CPU"
	$(BIN)/apir train --data $(DEMO)/data --config configs/paper_rcan_cpu_quick.yaml --out $(DEMO)/runs/rcan_quick --force
	@echo "== 3/6 evaluate apir's shipped default model"
	$(BIN)/apir evaluate --data $(DEMO)/data -o $(DEMO)/results/default $(EVAL) --label "apir default"
	@echo "== 4/6 evaluate the demo-trained RCAN"
	$(BIN)/apir evaluate --data $(DEMO)/data -o $(DEMO)/results/rcan_quick $(EVAL) --model $(DEMO)/runs/rcan_quick --label "paper RCAN (3 CPU-min)"
	@echo "== 5/6 classical baselines: CBM3D (given the true noise sigma) and non-local means"
	$(BIN)/apir evaluate --data $(DEMO)/data -o $(DEMO)/results/cbm3d $(EVAL) --method cbm3d
	$(BIN)/apir evaluate --data $(DEMO)/data -o $(DEMO)/results/nlm $(EVAL) --method nlm
	@echo "== 6/6 report"
	$(BIN)/apir report $(DEMO)/results/default $(DEMO)/results/rcan_quick $(DEMO)/results/cbm3d $(DEMO)/results/nlm -o $(DEMO)/report

test: $(STAMP)
	@bash scripts/ensure_chromium.sh   # the report's browser test needs it; never fatal
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache

# dgm-course: every target sets itself up; a second run reuses what is there.
#   make demo    run every project notebook for real and build build/site/index.html
#   make test    exactly what CI runs: lint + unit tests + notebooks in smoke mode
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQS := requirements.txt requirements-dev.txt pyproject.toml
STAMP := $(VENV)/.installed
DATA_STAMP := data/MNIST/raw/t10k-labels-idx1-ubyte
export PYTHONHASHSEED := 0
# Keep BLAS/torch to the machine's cores without oversubscription in CI.
export OMP_NUM_THREADS ?= 2
export MPLBACKEND ?= Agg

.PHONY: help setup data demo test unit notebooks lint bench site status check clean

help:
	@echo "make demo   - run all project notebooks (real settings) and build build/site/index.html"
	@echo "make test   - what CI runs: lint, unit tests, notebooks in smoke mode (DGM_SMOKE=1)"
	@echo "make setup  - create .venv with the pinned requirements and prepare the offline data"
	@echo "make lint | unit | notebooks | bench | site | status | check | clean"

$(STAMP): $(REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

$(DATA_STAMP): | $(STAMP)
	$(BIN)/python -m shared_utils.data prepare

setup: $(STAMP) $(DATA_STAMP)
	@$(BIN)/python -m shared_utils.data check >/dev/null || $(BIN)/python -m shared_utils.data prepare

data: $(STAMP)
	$(BIN)/python -m shared_utils.data prepare

lint: setup
	$(BIN)/pre-commit run --all-files --show-diff-on-failure

unit: setup
	$(BIN)/python -m pytest -q tests $(wildcard projects/*/tests)

notebooks: setup
	DGM_SMOKE=1 $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env $(wildcard projects/*/*.ipynb)

test: setup
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory notebooks

demo: setup
	$(BIN)/course run
	$(BIN)/course site
	@echo "open build/site/index.html"

site: setup
	$(BIN)/course site

status: setup
	$(BIN)/course status

check: setup
	$(BIN)/course check

bench: setup
	@for p in projects/*/; do \
	  slug=$$(basename $$p); \
	  if [ -f $$p/$$slug/bench.py ]; then \
	    echo "== bench $$slug"; (cd $$p && ../../$(BIN)/python -m $$slug.bench) || exit 1; \
	  fi; \
	done

clean:
	rm -rf build .pytest_cache .ruff_cache

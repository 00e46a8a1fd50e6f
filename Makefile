# dgm-course: every target sets itself up; a second run reuses what is there.
#   make demo    run every project notebook for real and build the course site (build/site)
#   make test    exactly what CI runs: lint + unit tests + notebooks in smoke mode
#   make test P=vae   the same for one project: its course check, tests and notebook (a quick loop)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQS := requirements.txt requirements-dev.txt pyproject.toml
STAMP := $(VENV)/.installed
IDX := train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte
DATA_FILES := $(addprefix data/MNIST/raw/,$(IDX)) $(addprefix data/FashionMNIST/raw/,$(IDX))
# Checksums verified once and remembered; a data file changed since (or missing) re-checks.
DATA_OK := data/.verified
# TORCH=cpu: torch and torchvision from PyTorch's CPU-only wheel index, as the GitHub workflows
# install them (no CUDA libraries; that index must be reachable). The default takes everything
# from the Python package index, which on Linux means the CUDA build (it runs on CPU too).
TORCH ?= default
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
ifeq ($(TORCH),cpu)
PIP_INDEX := --extra-index-url $(TORCH_CPU_INDEX)
else ifeq ($(TORCH),default)
PIP_INDEX :=
else
$(error TORCH=$(TORCH): use TORCH=cpu (CPU-only wheels from $(TORCH_CPU_INDEX)) or leave TORCH unset)
endif
export PYTHONHASHSEED := 0
# Keep BLAS/torch to the machine's cores without oversubscription in CI.
export OMP_NUM_THREADS ?= 2
export MPLBACKEND ?= Agg
# P=<slug> narrows unit, notebooks, test and check to one project; the default is everything.
P ?=
ifneq ($(strip $(P)),)
ifeq ($(wildcard projects/$(P)/project.toml),)
$(error P=$(P): no project folder projects/$(P) (with a project.toml); see `ls projects`)
endif
UNIT_PATHS := projects/$(P)/tests
NOTEBOOKS := $(wildcard projects/$(P)/*.ipynb)
else
UNIT_PATHS := tests $(wildcard projects/*/tests)
NOTEBOOKS := $(wildcard projects/*/*.ipynb)
endif

.PHONY: help setup data demo test unit notebooks lint bench site status check clean

help:
	@echo "make demo   - run all project notebooks (real settings) and build the site in build/site"
	@echo "make test   - what CI runs: lint, unit tests, notebooks in smoke mode (DGM_SMOKE=1)"
	@echo "make setup  - create .venv with the pinned requirements and prepare the offline data"
	@echo "              (TORCH=cpu: CPU-only torch wheels from PyTorch's index, no CUDA libraries)"
	@echo "make site   - the course site from the committed notebooks: build/site/index.html"
	@echo "make lint | unit | notebooks | bench | status | check | clean"
	@echo "P=<slug> (unit, notebooks, test, check): one project only, e.g. make test P=vae"

$(STAMP): $(REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_INDEX) -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

$(DATA_FILES): | $(STAMP)
	$(BIN)/python -m shared_utils.data prepare

$(DATA_OK): $(DATA_FILES)
	@$(BIN)/python -m shared_utils.data check >/dev/null || $(BIN)/python -m shared_utils.data prepare
	@touch $@

setup: $(STAMP) $(DATA_OK)
ifeq ($(TORCH),cpu)
	@$(BIN)/python -c "import sys, torch; sys.exit(torch.version.cuda is not None)" || { \
	  echo "make setup TORCH=cpu: .venv holds the CUDA build of torch; rm -rf .venv, then run it again"; \
	  exit 1; }
endif

data: $(STAMP)
	$(BIN)/python -m shared_utils.data prepare

# pre-commit's --all-files means the files git tracks: files not yet added (a new project's) are
# checked too, by name, so that `make lint` before `git add` says what CI will say after it.
lint: setup
	$(BIN)/pre-commit run --all-files --show-diff-on-failure
	@git ls-files -z --others --exclude-standard | xargs -0 -r \
	  $(BIN)/pre-commit run --show-diff-on-failure --files

unit: setup
	$(BIN)/python -m pytest -q $(UNIT_PATHS)

notebooks: setup
	DGM_SMOKE=1 $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env $(NOTEBOOKS)

ifneq ($(strip $(P)),)
test: setup
	$(BIN)/course check $(P)
	$(MAKE) --no-print-directory unit P=$(P)
	$(MAKE) --no-print-directory notebooks P=$(P)
else
test: setup
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory notebooks
endif

demo: setup
	$(BIN)/course run
	$(BIN)/course site --executed
	@echo "open build/site/index.html"

# The course site from the committed notebooks (Sphinx; no data or execution needed).
site: $(STAMP)
	$(BIN)/course site

status: setup
	$(BIN)/course status

check: setup
	$(BIN)/course check $(P)

bench: setup
	@echo "== bench shared_utils"; $(BIN)/python -m shared_utils.bench
	@for p in projects/*/; do \
	  slug=$$(basename $$p); \
	  if [ -f $$p/$$slug/bench.py ]; then \
	    echo "== bench $$slug"; (cd $$p && ../../$(BIN)/python -m $$slug.bench) || exit 1; \
	  fi; \
	done

clean:
	rm -rf build .pytest_cache .ruff_cache

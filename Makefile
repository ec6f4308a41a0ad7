# anomclip — two commands: `make book` (set up, execute every chapter, render) and `make test`.
# `make book` re-executes only the chapters whose inputs changed (FORCE=1: all); `make lab`: JupyterLab.
# PROFILE=smoke (default: tiny random backbone, synthetic data, CPU) or
# PROFILE=paper DATA_ROOT=/data DEVICE=cuda (ViT-L-14-336 openai, MVTec AD + VisA + …).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= smoke
DATA_ROOT ?= data
DEVICE ?= auto
FORCE ?= 0
# processes side by side: test workers (pytest-xdist) and chapters (smoke: 2, each on its share of
# the cores; paper: 1, one GPU holds one ViT-L at a time)
JOBS ?= $(if $(filter smoke,$(PROFILE)),2,1)
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: env test test-fast book notebooks html lab check-book check-lab check-deps bench clean distclean

env: $(VENV)/.installed

# The installer: uv (from PyPI, into $(VENV)/.uv, outside the environment's packages) unpacks and
# byte-compiles the locked wheels in parallel: 48 s from an empty cache where pip takes 100-190 s
# (docs/architecture.md, "The loop"). INSTALLER=pip uses pip alone, as does a failed uv install.
# uv reads UV_INDEX_URL / UV_EXTRA_INDEX_URL, not pip.conf: set them, or INSTALLER=pip, for a private index.
INSTALLER ?= uv
UV_VERSION := 0.13.10

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@if [ "$(INSTALLER)" = uv ] && $(BIN)/python -m pip install --quiet --disable-pip-version-check \
	      --target $(VENV)/.uv uv==$(UV_VERSION); then \
	  install="$(VENV)/.uv/bin/uv pip install --quiet --compile-bytecode --python $(BIN)/python"; \
	else install="$(BIN)/python -m pip install --quiet --disable-pip-version-check"; fi; \
	set -ex; \
	$$install -r requirements.lock; \
	$$install --no-deps --no-build-isolation -e .; \
	: MathJax 3 with its fonts for the offline book, a source of files only, not a Sphinx extension; \
	$$install --no-deps sphinx-mathjax-offline==0.0.2
	@touch $@

test: env
	$(BIN)/python -m pytest -q -ra $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist worksteal)

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow and not notebooks" $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist worksteal)

notebooks: env
	$(BIN)/python -m anomclip.book execute --profile $(PROFILE) --data-root $(DATA_ROOT) --device $(DEVICE) --jobs $(JOBS) $(if $(filter 1,$(FORCE)),--force) $(if $(BACKBONE),--backbone $(BACKBONE)) $(if $(PRETRAINED),--pretrained $(PRETRAINED))

html: env
	$(BIN)/python -m anomclip.book html $(if $(filter 1,$(FORCE)),--force)

book: notebooks html
	@echo "book: open book/_build/html/index.html"

# JupyterLab on the chapters: the .py chapters open as notebooks (jupyter/labconfig), live controls on
lab: env
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH)) MPLBACKEND=module://matplotlib_inline.backend_inline \
	  $(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

check-book: env
	$(BIN)/python tools/check_book.py --html book/_build/html --screenshot docs/book-screenshot.png

check-lab: env
	$(BIN)/python tools/check_lab.py --screenshot docs/lab-screenshot.png

# the fast tests on the lowest declared versions (a scratch venv in .cache/check-deps) and, given
# OPEN_CLIP_SRC=/path/to/a/checkout, on that open_clip (its development branch); docs/dependencies.md
check-deps: env
	$(BIN)/python tools/check_deps.py --floors $(if $(OPEN_CLIP_SRC),--open-clip-src $(OPEN_CLIP_SRC))

bench: env
	$(BIN)/anomclip bench --out results/bench.json

clean:
	rm -rf book/_build book/chapters book/_mathjax .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) results/* data/* .cache

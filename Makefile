# abaw_workbench — every target creates or refreshes .venv first, so a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The environment is rebuilt only when the dependency spec changes (its hash names the stamp file).
DEPS_HASH := $(shell { cat setup.py; grep -E '^(min_python|requirements|dev_requirements|console_scripts) *=' settings.ini; } | sha1sum | cut -c1-12)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
# Two workers, one thread each: the CI machine has 2 cores.
NB_WORKERS ?= 2

.PHONY: env browser demo test test-slow lab docs docs-quarto bench clean-nbs export help

help:
	@echo "make demo       run the whole method on the embedded synthetic data set (abaw demo)"
	@echo "make test       every fast test: notebook hygiene, notebooks (nbdev_test), tests/"
	@echo "make test-slow  the slow-flagged notebook cells and slow tests too"
	@echo "make lab        JupyterLab (127.0.0.1) on the failure-case explorer, nbs/tutorials/explore.ipynb"
	@echo "make docs       build the HTML docs site from the notebooks into _docs/ (pure Python, offline; no Quarto)"
	@echo "make docs-quarto  nbdev's own docs path (nbdev_docs), for machines with Quarto on PATH"
	@echo "make bench      run every benchmark in bench/ and print one table"
	@echo "make export     nbdev_export + nbdev_clean + README (after editing notebooks)"

env:
	@if [ -f $(STAMP) ] && $(PY) -c 'import abaw_workbench' 2>/dev/null; then exit 0; fi; \
	if ! $(PY) -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
	  echo "[env] creating $(VENV) with $(PYTHON)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV) || exit 1; \
	fi; \
	echo "[env] installing dependencies into $(VENV) (first time: about 2 minutes)"; \
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip && \
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' && \
	$(PY) -m pip check && \
	rm -f $(VENV)/.deps-* && touch $(STAMP) && echo "[env] ready"

# Widget and docs tests drive Debian's Chromium with the Python playwright package (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "[browser] installing Debian chromium"; \
	  (apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	   { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }) \
	  || echo "[browser] could not install chromium: browser tests will fail"; }

demo: env
	$(BIN)/abaw demo

# The tests' temporary files go to one folder (TMPDIR), emptied when a test run starts and removed when it passes:
# nbdev_test runs notebooks in worker processes that never run exit handlers, so the notebooks' temporary folders
# would otherwise stay behind (over 1 GB a run). A failed run leaves its files there to look at.
TEST_TMP := $(or $(TMPDIR),/tmp)/abaw-test-$(shell printf %s "$(CURDIR)" | sha1sum | cut -c1-8)

test: env browser
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	TMPDIR=$(TEST_TMP) $(PY) -m pytest -q -p no:cacheprovider tests/test_hygiene.py
	TMPDIR=$(TEST_TMP) OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers $(NB_WORKERS) --timing
	TMPDIR=$(TEST_TMP) $(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests
	rm -rf $(TEST_TMP)

test-slow: env browser
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	TMPDIR=$(TEST_TMP) OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers $(NB_WORKERS) --flags slow --timing
	TMPDIR=$(TEST_TMP) $(PY) -m pytest -q -p no:cacheprovider tests
	rm -rf $(TEST_TMP)

# Opens on the explore notebook; the project's lab settings (lab/user-settings: no news pop-up) are used.
lab: env
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --allow-root --ServerApp.root_dir=nbs \
	  --LabApp.default_url=/lab/tree/tutorials/explore.ipynb \
	  --LabApp.user_settings_dir=lab/user-settings --LabApp.workspaces_dir=lab/workspaces

# The Python builder (nbs/91_docs.ipynb) is the default and the one CI checks; it writes only _docs/.
docs: env
	$(BIN)/abaw docs --out _docs

docs-quarto: env
	@command -v quarto >/dev/null 2>&1 || { echo "[docs-quarto] quarto is not on PATH: use make docs"; exit 1; }
	$(BIN)/nbdev_docs

bench: env
	$(PY) bench/run_all.py

export: env
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/abaw docs --readme-only

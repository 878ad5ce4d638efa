# forecastguard: `make demo` plays the whole chain locally, `make test` runs the tests.
# Both set everything up first (idempotent): a virtualenv in .venv with pinned packages.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# This machine's pip config lists local mirrors that warn for every package they lack.
QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
INPUTS := requirements/constraints.txt requirements/dev.txt shared/pyproject.toml jobs/trainer/requirements.txt jobs/trainer/pyproject.toml

.PHONY: setup beam-setup test test-fast demo lint format bench clean

setup: $(STAMP)

# checkov (tests/infra) in its own virtualenv: its pins fight pytest's over `packaging`.
VENV_CHECKOV := .venv-checkov
CHECKOV_STAMP := $(VENV_CHECKOV)/.installed

$(CHECKOV_STAMP): requirements/checkov.txt
	@test -x $(VENV_CHECKOV)/bin/python || $(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/checkov.txt $(QUIET)
	@touch $@

# The Beam job (issue 24) in its own virtualenv: apache-beam pins protobuf < 7 (.venv has 7).
# Its tests (tests/integration/beam) run there; in .venv they skip, saying so.
VENV_BEAM := .venv-beam
BEAM_STAMP := $(VENV_BEAM)/.installed
BEAM_INPUTS := requirements/beam.txt requirements/beam-constraints.txt shared/pyproject.toml jobs/health_beam/pyproject.toml

$(BEAM_STAMP): $(BEAM_INPUTS)
	@test -x $(VENV_BEAM)/bin/python || $(PYTHON) -m venv $(VENV_BEAM)
	$(VENV_BEAM)/bin/python -m pip install --quiet --disable-pip-version-check -c requirements/beam-constraints.txt -r requirements/beam.txt -e shared -e jobs/health_beam $(QUIET)
	@touch $@

beam-setup: $(BEAM_STAMP)

$(STAMP): $(INPUTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip $(QUIET)
	$(PIP_INSTALL) -c requirements/constraints.txt -r requirements/dev.txt -r jobs/trainer/requirements.txt -e shared -e jobs/trainer $(QUIET)
	@touch $@

# The suite runs on the cores this process may use, at most four (pytest-xdist), one test
# file per worker (--dist loadfile), so a module's fixtures (the demo chain's, a trained
# model's) are built once. `make test TEST_WORKERS=0` runs it in this one process.
TEST_WORKERS ?= auto
PYTEST_WORKERS := -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

test: setup $(CHECKOV_STAMP) $(BEAM_STAMP)
	$(BIN)/python -m pytest $(PYTEST_WORKERS)
	$(VENV_BEAM)/bin/python -m pytest -p no:bqemulator tests/integration/beam

test-fast: setup
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow and not mariadb"

demo: setup
	$(BIN)/forecastguard demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(VENV_CHECKOV) $(VENV_BEAM) .pytest_cache .ruff_cache

# Model comparisons (issue 9): a separate .venv-exp with the heavy extras (torch, gluonts,
# lightgbm; pandas 2 for gluonts), then the backtest with its defaults on the pasta data.
EXP_VENV := .venv-exp
EXP_STAMP := $(EXP_VENV)/.installed
EXP_ARGS ?= --data ../shared/data/pasta_sales_uci611
.PHONY: experiments

$(EXP_STAMP): experiments/constraints.txt shared/pyproject.toml jobs/trainer/requirements.txt jobs/trainer/pyproject.toml
	@test -x $(EXP_VENV)/bin/python || $(PYTHON) -m venv $(EXP_VENV)
	$(EXP_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c experiments/constraints.txt -r jobs/trainer/requirements.txt -e 'shared[experiments]' -e jobs/trainer $(QUIET)
	@touch $@

experiments: $(EXP_STAMP)
	$(EXP_VENV)/bin/python -m experiments $(EXP_ARGS)

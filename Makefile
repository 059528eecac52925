# The zoo's entry points: `make quickstart`, `make test` (what CI runs) and `make test-fast` (the unit tests, for the
# edit loop). All create .venv from the lock file, then install the zoo itself editable, so that the console scripts
# (zoo-train, ...) and the tests run the working tree. The commands set their own XLA:CPU and logging defaults
# (zoo/cli.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/quickstart

.PHONY: quickstart test test-fast venv clean-quickstart

$(VENV)/.installed: requirements-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(VENV)/bin/zoo-train --config=configs/quickstart.py --workdir=$(WORKDIR)
	$(VENV)/bin/zoo-eval --config=configs/quickstart.py --workdir=$(WORKDIR)

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist worksteal --durations=15 tests

test-fast: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist worksteal -m "not slow" tests

clean-quickstart:
	rm -rf $(WORKDIR)

# The zoo's two entry points: `make quickstart` and `make test`. Both create .venv from the pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/quickstart
# Measured on 2-core Zen4: +40% on convolutions (see SPEC.md, last section).
export XLA_FLAGS ?= --xla_cpu_experimental_ynn_fusion_type=-individual_convolution
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: quickstart test venv clean-quickstart

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(PY) train.py --config=configs/quickstart.py --workdir=$(WORKDIR)
	$(PY) eval.py --config=configs/quickstart.py --workdir=$(WORKDIR)

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --durations=15 tests

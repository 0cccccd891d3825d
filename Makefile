# Two entry points for a fresh machine (Python 3.11, no GPU): `make demo` and `make test`.
# Both create .venv and install the pinned versions (requirements/constraints.txt) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/gcnas-blocks

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/blocks.py

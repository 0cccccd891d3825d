# Two entry points for a fresh machine (Python 3.11, no GPU): `make demo` and `make test`.
# Both create .venv and install the pinned versions (requirements/constraints.txt) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup data postgres demo test bench

setup: $(VENV)/.installed

# The pinned PyTorch is a CUDA build (it runs on the CPU too): the venv takes about 6 GB. Say so before pip fails
# half-way with "No space left on device".
NEED_KB := 6500000
$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	@free_kb=$$(df -Pk $(dir $(abspath $(VENV))) 2>/dev/null | awk 'NR==2 {print $$4}'); \
	  if [ ! -x $(PY) ] && [ -n "$$free_kb" ] && [ "$$free_kb" -lt $(NEED_KB) ]; then \
	    echo "warning: $$((free_kb / 1024)) MB free on $$(df -P $(dir $(abspath $(VENV))) | awk 'NR==2 {print $$6}'); the install needs about 6,300 MB (PyTorch's CUDA build)" >&2; \
	  fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $@

# Fashion-MNIST from Debian's package (the only image data this machine class can reach).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data: $(FASHION_MNIST)
$(FASHION_MNIST):
	$(if $(shell id -u | grep -x 0),,sudo )apt-get install -y dataset-fashion-mnist

# PostgreSQL's server binaries for the tests, which start a throw-away server on a loopback port themselves. Where
# the package cannot be installed, those tests are skipped and say why.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  $(if $(shell id -u | grep -x 0),,sudo )apt-get install -y postgresql || \
	  echo "PostgreSQL could not be installed; the PostgreSQL tests will be skipped"

# A real search: Fashion-MNIST, the tiny timm ResNet, the gc_full space, 20 trials with median pruning.
demo: setup data
	$(VENV)/bin/gcnas-search

test: setup data postgres
	$(PY) -m pytest

bench: setup data
	$(PY) benchmarks/blocks.py
	$(PY) benchmarks/search.py

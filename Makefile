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

# System packages come from Debian's apt. A fresh machine has no package lists (or stale ones) until `apt-get update`
# has run, and `apt-get install` then answers "Unable to locate package": on a failed install refresh the lists once
# and try again. $(call apt_install,PACKAGES) exits non-zero, after one line saying what to run by hand, if that fails.
SUDO := $(if $(shell id -u | grep -x 0),,sudo )
APT := $(SUDO)env DEBIAN_FRONTEND=noninteractive apt-get
define apt_install
{ $(APT) install -y $(1) || \
  { echo "apt-get could not install $(1); refreshing the package lists (apt-get update) and trying again" >&2; \
    $(APT) update && $(APT) install -y $(1); } || \
  { echo "error: could not install $(1); run by hand: $(SUDO)apt-get update && $(SUDO)apt-get install -y $(1)" >&2; \
    false; }; }
endef

# Fashion-MNIST from Debian's package (the only image data this machine class can reach).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data: $(FASHION_MNIST)
$(FASHION_MNIST):
	@$(call apt_install,dataset-fashion-mnist)

# PostgreSQL's server binaries for the tests, which start a throw-away server on a loopback port themselves. Where
# the package cannot be installed, those tests are skipped and say why (CI turns that skip into a failure).
PG_INITDB := /usr/lib/postgresql/*/bin/initdb
postgres:
	@ls $(PG_INITDB) >/dev/null 2>&1 || $(call apt_install,postgresql) || \
	  echo "PostgreSQL could not be installed; the PostgreSQL tests will be skipped"

# A real search: Fashion-MNIST, the tiny timm ResNet, the gc_full space, 20 trials with median pruning.
demo: setup data
	$(VENV)/bin/gcnas-search

# Two test processes (pytest-xdist): the tests run one torch thread each (tests/conftest.py), so one process leaves
# a core of a 2-core machine mostly idle. TEST_WORKERS=4 make test on a larger machine; --durations: every CI log
# says where its time goes.
TEST_WORKERS ?= 2
test: setup data postgres
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=25

bench: setup data
	$(PY) -m benchmarks.blocks
	$(PY) -m benchmarks.search

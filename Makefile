# Two entry points, both usable on a fresh clone of a fresh machine:
#   make demo   set up .venv and run the main job on the embedded default data
#   make test   set up .venv and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
# The constraints file pins torch to the CPU build on these machines: an unpinned torch
# pulls several GB of CUDA packages.
CONSTRAINTS := .ci/constraints.txt

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[test,notebooks,peers,baseline,demo]"
	$(PY) -c "import torch, sys; sys.exit('a CUDA build of torch got installed: reinstall with -c $(CONSTRAINTS)' if torch.version.cuda else 0)"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/sensei-xr demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(VENV)/bin/sensei-xr bench

clean:
	rm -rf $(VENV) .pytest_cache

# One-command set-up: every target creates .venv on first use and installs the project with the pinned
# constraints, so torch is the local CPU build (torch==2.13.0) and nothing pulls CUDA wheels.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spikelib-installed
# glibc malloc settings: without them, large per-step tensors cause page-fault outliers (see benchmarks/README.md).
export MALLOC_MMAP_THRESHOLD_ ?= 1000000000000
export MALLOC_TRIM_THRESHOLD_ ?= 1000000000000
export MALLOC_TOP_PAD_ ?= 1073741824

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml constraints/cpu.txt constraints/peers.txt $(wildcard scripts/install_*.sh)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[fast,dev,report,digits]"
	$(PY) -m pip install -q --no-deps -r constraints/peers.txt
	for script in $(sort $(wildcard scripts/install_*.sh)); do bash $$script $(PY) || exit 1; done
	$(PY) -c "import torch, numba; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/spikelib demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache

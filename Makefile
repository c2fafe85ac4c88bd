# `make demo` and `make test` create .venv if it is missing and install the package first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU/CUDA wheels this project is tested with; pip takes them from the local wheel store when present.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test bench lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

demo: install
	$(VENV)/bin/dwf-hub demo --out demo_out

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_mlp.py
	$(PY) benchmarks/bench_phases.py
	$(PY) benchmarks/bench_canonicalize.py
	$(PY) benchmarks/bench_pca_resnet18.py --skip-incremental
	$(PY) benchmarks/bench_evaluate.py

lint: install
	$(VENV)/bin/ruff check dwf_hub tests benchmarks
	$(VENV)/bin/ruff format --check dwf_hub tests benchmarks

format: install
	$(VENV)/bin/ruff format dwf_hub tests benchmarks
	$(VENV)/bin/ruff check --fix dwf_hub tests benchmarks

clean:
	rm -rf $(VENV) demo_out bench_out .pytest_cache .ruff_cache *.egg-info

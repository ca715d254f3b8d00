#!/usr/bin/env bash
# Sparse Fetch pick-and-place's expert beyond the paper budget: a wider search, a longer
# horizon, both (the settings that solved the sparse door's expert, expert_sweep_door.sh).
# Same layout as experiments/expert_sweep.sh (4 episodes, seed 0 = the same start states as
# its exact and colorednoise rows, native physics, the task's beta 3.0).
set -euo pipefail
out=${1:-experiments/results/expert}
mkdir -p "$out"
bin=${APEXJAX:-.venv/bin/apexjax}
run() {  # label [plan options...]
  local label=$1; shift
  [ -f "$out/fetch_pick_and_place_$label.json" ] && return 0
  "$bin" plan --task fetch_pick_and_place --preset paper --episodes 4 --seed 0 \
    --task-set backend=native --chunk 25 --out "$out/fetch_pick_and_place_$label.json" \
    --set noise_normalization=exact "$@"  # unit variance unless a setting says otherwise
}
run std1 --set init_std=1.0
run h60std1 --set horizon=60 --set init_std=1.0
run h60 --set horizon=60
# the dense cost (‖block − goal‖ instead of its 5 cm indicator), the same start states:
# is it the sparse cost or the task that defeats the expert?
run dense --task-set dense=true

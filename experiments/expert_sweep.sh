#!/usr/bin/env bash
# The iCEM expert alone on the paper's sparse tasks at the paper planner budget, native
# physics: does the planner succeed without a policy, and what does the noise scale do?
#
#   experiments/expert_sweep.sh [OUT_DIR]   (default experiments/results/expert)
#
# One `apexjax plan` per (task, setting), 4 episodes each from the same seed (so the same
# start states), JSON per run; experiments/expert_report.py tabulates them.
set -euo pipefail
out=${1:-experiments/results/expert}
mkdir -p "$out"
bin=${APEXJAX:-.venv/bin/apexjax}
run() {  # task label [plan options...]
  local task=$1 label=$2; shift 2
  [ -f "$out/${task}_$label.json" ] && return 0  # done already: the sweep resumes
  "$bin" plan --task "$task" --preset paper --episodes 4 --seed 0 --task-set backend=native \
    --chunk 25 --out "$out/${task}_$label.json" \
    --set noise_normalization=exact "$@"  # unit variance unless a setting says otherwise
}
for task in door fetch_pick_and_place; do
  run "$task" exact
  run "$task" colorednoise --set noise_normalization=colorednoise
done

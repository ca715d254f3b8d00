#!/usr/bin/env bash
# The colored-noise scale, measured on more start states: the iCEM expert alone at the paper
# planner budget, native physics, unit-variance noise ("exact") against the
# authors' `colorednoise` scale, from the same seed (so the same start states) in both.
#
#   experiments/noise_scale_sweep.sh TASK EPISODES SEED [OUT_DIR]
#
# (default OUT_DIR experiments/results/expert); experiments/expert_report.py tabulates the JSON.
set -euo pipefail
task=$1 episodes=$2 seed=$3
out=${4:-experiments/results/expert}
mkdir -p "$out"
bin=${APEXJAX:-.venv/bin/apexjax}
run() {  # label [plan options...]
  local label=$1; shift
  local file="$out/${task}_${label}_seed${seed}.json"
  [ -f "$file" ] && return 0  # done already: the sweep resumes
  "$bin" plan --task "$task" --preset paper --episodes "$episodes" --seed "$seed" \
    --task-set backend=native --chunk 25 --out "$file" \
    --set noise_normalization=exact "$@"  # unit variance unless a setting says otherwise
}
run exact
run colorednoise --set noise_normalization=colorednoise

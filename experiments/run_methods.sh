#!/usr/bin/env bash
# Runs experiments/ablation.py for each method as its own process, in parallel, on one
# machine (compiles use separate CPU cores; the accelerator is shared), then the report.
#
#   experiments/run_methods.sh TASK OUT_DIR [ablation.py options...]
#
# Writes OUT_DIR/TASK_METHOD.json per method and OUT_DIR/TASK.png. On a GPU each process
# gets a share of its memory (XLA_PYTHON_CLIENT_MEM_FRACTION, default 0.15 for the six).
# METHODS="bc apex" picks methods; e.g. the paper budget on a GPU:
#   experiments/run_methods.sh door runs/paper --preset paper --seeds 0,1,2
set -euo pipefail
task=$1; out=$2; shift 2
methods=${METHODS:-icem cem bc dagger fixed apex}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.15}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
pids=()
for m in $methods; do
  python3 "$here/ablation.py" --task "$task" --methods "$m" --out "$out/${task}_$m.json" "$@" \
    > "$out/${task}_$m.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
files=()
for m in $methods; do [ -f "$out/${task}_$m.json" ] && files+=("$out/${task}_$m.json"); done
if [ ${#files[@]} -gt 0 ]; then python3 "$here/report.py" "${files[@]}" --md "$out/$task.md"; fi
exit $status

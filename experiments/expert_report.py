"""Table of ``apexjax plan --out`` results (the planner alone): one row per JSON file.

python experiments/expert_report.py experiments/results/expert/*.json --md OUT.md
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np


def row(path: pathlib.Path) -> str:
    r = json.loads(path.read_text())
    returns = np.asarray(r["returns"])
    success = r.get("success")
    succ = "–" if success is None else f"{int(np.sum(success))}/{len(success)}"
    cfg = r["config"]
    parts = path.stem.split("_")
    setting = parts[-1]
    if setting.startswith("seed") and len(parts) > 1:  # TASK_SETTING_seedN (noise_scale_sweep.sh)
        setting = f"{parts[-2]}, seed {setting[4:]}"
    return (
        f"| {r['task']} | {setting} | {r.get('backend', '?')} | {succ} | "
        f"{returns.mean():.2f} ± {returns.std():.2f} | N={cfg['population']}, I={cfg['iterations']}, "
        f"h={cfg['horizon']}, β={cfg['beta']}, init_std={cfg['init_std']}, "
        f"noise={cfg.get('noise_normalization', 'exact')} | {r['simulated_steps_per_control_step']} | "
        f"{r['time_per_step_s'] * 1e3:.0f} ms | {r['compile_s']:.1f} s |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=pathlib.Path)
    p.add_argument("--md", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    lines = [
        "| task | setting | physics | success | return (mean ± std) | planner | simulated steps / "
        "control step | wall per control step (all episodes) | compile |",
        "|---|---|---|---|---|---|---|---|---|",
        *[row(f) for f in args.files],
    ]
    text = "\n".join(lines) + "\n"
    if args.md:
        args.md.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

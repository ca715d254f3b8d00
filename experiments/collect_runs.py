"""``apexjax train`` run directories as one results file in ``experiments/ablation.py``'s format.

The paper's tasks run as separate ``apexjax train`` commands (one per method and seed, in
the background, resumable), not as one vmapped ablation call. This collects them:

    python experiments/collect_runs.py --task door --method apex \\
        --run runs/door_apex_s0 --command "apexjax train ..." \\
        --out experiments/results/paper/door_apex.json
    python experiments/report.py experiments/results/paper/door_apex.json --md ...

Per run (one seed): the config, every iteration's metrics (``metrics.jsonl``), compile and
training wall-clock (``summary.json`` when the run finished, else the iterations' own
seconds) and the final evaluation from ``RUN_DIR/eval.json`` (or ``--eval NAME`` in the run
directory: ``apexjax eval RUN_DIR --episodes 20 --expert-episodes 0``). Where that
evaluation left the expert out, the expert's row is its training episodes of the last
iteration, and ``expert_eval_source`` says so. ``initial_eval`` holds the untrained
policy's return as the first iteration measured it (its own closed-loop episodes).
Several ``--run`` (seeds of one method) become lists, seed by seed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks._common import environment_info, write_json

METRICS = ("policy_return", "policy_success", "expert_return", "expert_success")


def _rows(run: pathlib.Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def collect_run(run: pathlib.Path, eval_name: str) -> dict:
    """One seed's config, history, timings and final evaluation."""
    config = json.loads((run / "config.json").read_text())
    rows = _rows(run)
    if not rows:
        raise SystemExit(f"{run}: no iterations in metrics.jsonl")
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    ev_path = run / eval_name
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else None
    last = rows[-1]
    final: dict = {}
    source = {}
    for k in METRICS:
        if ev is not None and ev.get(k) is not None:
            final[k], source[k] = ev[k], f"evaluation of checkpoint {ev['iteration']}"
        elif k in last:
            final[k], source[k] = last[k], f"training episodes of iteration {last['iteration']}"
    return {
        "run_dir": str(run),
        "config": config,
        "history": rows,
        "final": final,
        "final_source": source,
        "eval": ev,
        "untrained_policy_return": rows[0].get("untrained_policy_return"),
        "compile_s": summary.get("compile_seconds"),
        "train_s": summary.get("train_seconds_this_session", sum(r["seconds"] for r in rows)),
        "simulated_steps": sum(r["simulated_steps"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--run", action="append", type=pathlib.Path, required=True)
    p.add_argument("--command", action="append", default=[], help="the command of each run")
    p.add_argument("--eval", default="eval.json", help="evaluation file in each run directory")
    p.add_argument("--out", type=pathlib.Path, required=True)
    args = p.parse_args(argv)
    runs = [collect_run(r, args.eval) for r in args.run]
    for r in runs:
        if r["config"]["task"] != args.task:
            raise SystemExit(f"{r['run_dir']}: task {r['config']['task']!r}, not {args.task!r}")
    n_it = min(len(r["history"]) for r in runs)
    history = [
        {k: [r["history"][i].get(k) for r in runs] for k in runs[0]["history"][i]}
        for i in range(n_it)
    ]
    finals = {k: [r["final"].get(k) for r in runs] for k in METRICS if k in runs[0]["final"]}
    episodes = {r["eval"]["episodes"] for r in runs if r["eval"]}
    meta = json.loads((args.run[0] / "metadata.json").read_text())
    from apexjax.planning.icem import ICEMConfig, simulated_per_step

    planner = ICEMConfig(**runs[0]["config"]["planner"])
    method = {
        "planner_only": False,
        "run_dirs": [r["run_dir"] for r in runs],
        "commands": args.command,
        "compile_s": runs[0]["compile_s"],
        "train_s": sum(r["train_s"] for r in runs),
        "eval_s": None,
        "simulated_steps_all_seeds": sum(r["simulated_steps"] for r in runs),
        "planner_simulated_per_step": simulated_per_step(planner),
        "eval_episodes": sorted(episodes)[0] if len(episodes) == 1 else sorted(episodes),
        "initial_eval": {"policy_return": [r["untrained_policy_return"] for r in runs]},
        "final_eval": finals,
        "final_eval_source": [r["final_source"] for r in runs],
        "iterations_done": n_it,
        "history": history,
        "config": runs[0]["config"],
    }
    out = {
        "command": " ; ".join(args.command) or "apexjax train (see run_dirs)",
        "environment": environment_info(),
        "task": args.task,
        "seeds": [r["config"]["seed"] for r in runs],
        "preset": meta.get("preset"),
        "set": meta.get("set"),
        "reduction_vs_paper": meta.get("reduction_vs_paper"),
        "eval_episodes": method["eval_episodes"],
        "methods": {args.method: method},
    }
    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

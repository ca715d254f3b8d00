"""The paper-budget methods table of one task, from committed metrics and evaluations.

    python experiments/paper_table.py experiments/paper_specs/halfcheetah_running.json \\
        --out experiments/results/paper/halfcheetah_running.json
    python experiments/report.py experiments/results/paper/halfcheetah_running.json \\
        --md experiments/results/paper/halfcheetah_running.md

At the paper's planner budget every method and seed is its own ``apexjax train`` (or
``apexjax plan``) command, run in the background over hours; run directories are not part
of the repository. What is committed per run is its ``metrics.jsonl``, the evaluation of
its checkpoints by ``experiments/checkpoint_evals.py`` (the policy alone on the same fresh
start states for every run and checkpoint) and, where kept, its ``summary.json`` or, for a
run stopped before it wrote one, its log (compile time). A spec file (JSON) names those files per method and seed:

    {"task": "halfcheetah_running", "checkpoint": 8, "preset": "paper",
     "methods": {
       "icem": {"planner_only": true, "command": "...",
                "seeds": [{"seed": 0, "plan": "experiments/results/expert/....json"}]},
       "apex": {"set": ["num_envs=2", "label=mean", ...],
                "seeds": [{"seed": 0, "run_dir": "runs/...", "metrics": "....jsonl",
                           "evals": "....json", "run": "mean",
                           "summary": "....json (optional)",
                           "log": "apexjax train's output (optional)"}]}}}

``evals`` is ``checkpoint_evals.py``'s output (``run`` names the run in it) or, for a run
evaluated at one checkpoint only, ``apexjax eval --out``'s (that checkpoint must be the
table's).

A trained method's settings are the ``--set`` items of its ``apexjax train`` command on top
of ``preset``; the config, the budget against the paper preset and the command of every
seed are built from them, so the table says exactly what ran.

and this writes ``experiments/ablation.py``'s result format (``report.py`` makes the table
and the learning curves from it) with, per trained method and seed, ``final_eval`` at
``checkpoint`` (the same iteration for every method): ``policy_return`` the policy alone
on the evaluation's episodes (mean; ``policy_return_median`` too), ``expert_return`` the
expert's return in that iteration's training episodes (guided where the method guides),
``history`` every iteration's training metrics up to ``checkpoint`` with the evaluation of
that iteration's checkpoint as ``policy_return_eval``; for planner-only methods the
planner's episodes (``apexjax plan --out``), ``expert_return`` their mean per seed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks._common import environment_info, write_json

ROOT = pathlib.Path(__file__).resolve().parent.parent
# apexjax train's log line with the training step's compile time
_COMPILED = re.compile(r"compiled the training step in ([0-9.]+) s")


def _path(text: str) -> pathlib.Path:
    p = pathlib.Path(text)
    return p if p.is_absolute() else ROOT / p


def _jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _seed_of_trained(entry: dict, checkpoint: int, eval_episodes: set[int]) -> dict:
    """One training run's rows up to ``checkpoint`` and its checkpoint evaluations."""
    rows = _jsonl(_path(entry["metrics"]))
    if len(rows) < checkpoint:
        raise SystemExit(f"{entry['metrics']}: {len(rows)} iterations, need {checkpoint}")
    rows = rows[:checkpoint]
    evals = json.loads(_path(entry["evals"]).read_text())
    eval_episodes.add(int(evals["episodes"]))
    if "runs" not in evals and "iteration" in evals:  # `apexjax eval --out`: one checkpoint
        checkpoints = [{**evals, "checkpoint": evals["iteration"]}]
    else:
        try:
            checkpoints = evals["runs"][entry["run"]]["checkpoints"]
        except KeyError:
            raise SystemExit(f"{entry['evals']}: no run named {entry['run']!r}") from None
    by_step = {int(c["checkpoint"]): c for c in checkpoints}
    if checkpoint not in by_step:
        raise SystemExit(
            f"{entry['evals']}: run {entry.get('run')!r} has no checkpoint {checkpoint}"
        )
    history = []
    for r in rows:
        h = dict(r)
        ev = by_step.get(int(r["iteration"]))
        if ev is not None:
            h["policy_return_eval"] = ev["policy_return"]
            if ev.get("policy_success") is not None:
                h["policy_success_eval"] = ev["policy_success"]
        history.append(h)
    ev = by_step[checkpoint]
    returns = ev.get("policy_returns")
    final = {
        "policy_return": ev["policy_return"],
        "policy_return_median": ev.get(
            "policy_return_median", statistics.median(returns) if returns else None
        ),
        "expert_return": rows[-1]["expert_return"],
    }
    if ev.get("policy_success") is not None:
        final["policy_success"] = ev["policy_success"]
    if rows[-1].get("expert_success") is not None:
        final["expert_success"] = rows[-1]["expert_success"]
    summary = json.loads(_path(entry["summary"]).read_text()) if entry.get("summary") else {}
    compile_s = summary.get("compile_seconds")
    if compile_s is None and entry.get("log"):  # a run stopped before its summary
        found = _COMPILED.search(_path(entry["log"]).read_text())
        compile_s = float(found.group(1)) if found else None
    return {
        "seed": entry["seed"],
        "history": history,
        "final": final,
        # the untrained policy's return: measured by the adaptive weight, else the first
        # DAgger phase (the untrained policy's own episodes); BC runs neither
        "untrained": rows[0].get("untrained_policy_return", rows[0].get("dagger_return")),
        "compile_s": compile_s,
        "train_s": sum(r["seconds"] for r in rows),
        "simulated_steps": sum(r["simulated_steps"] for r in rows),
    }


def train_command(task: str, preset: str, items: list[str], seed: int, run_dir: str) -> str:
    """The ``apexjax train`` command of one seed of a method."""
    sets = " ".join(f"--set {x}" for x in [f"seed={seed}", *items])
    return (
        f"apexjax train --task {task} --preset {preset} --run-dir {run_dir} {sets} "
        "--devices 2 --no-render"
    )


def trained_method(
    task: str, preset: str, spec: dict, checkpoint: int, eval_episodes: set[int]
) -> dict:
    """A training method's seeds in ``experiments/ablation.py``'s format."""
    from apexjax.configs import to_dict
    from apexjax.planning.icem import simulated_per_step
    from apexjax.presets import config_reduction, train_config

    items = list(spec.get("set", []))
    config = train_config(task, preset, items)
    seeds = [_seed_of_trained(e, checkpoint, eval_episodes) for e in spec["seeds"]]
    keys = [k for k in seeds[0]["final"] if all(k in s["final"] for s in seeds)]
    history = [
        {k: [s["history"][i].get(k) for s in seeds] for k in seeds[0]["history"][i]}
        for i in range(checkpoint)
    ]
    compiles = [s["compile_s"] for s in seeds if s["compile_s"] is not None]
    return {
        "planner_only": False,
        "seeds": [s["seed"] for s in seeds],
        "commands": [
            train_command(task, preset, items, e["seed"], e["run_dir"]) for e in spec["seeds"]
        ]
        + list(spec.get("more_commands", [])),
        "compile_s": statistics.median(compiles) if compiles else None,
        "train_s": sum(s["train_s"] for s in seeds),
        "eval_s": None,
        "simulated_steps_all_seeds": sum(s["simulated_steps"] for s in seeds),
        "planner_simulated_per_step": simulated_per_step(config.expert_planner),
        # the budget up to the table's checkpoint, against the preset's whole run
        "reduction_vs_paper": config_reduction(
            train_config(task, preset, [*items, f"iterations={checkpoint}"])
        ),
        "initial_eval": {"policy_return": [s["untrained"] for s in seeds]},
        "final_eval": {k: [s["final"][k] for s in seeds] for k in keys},
        "final_eval_checkpoint": checkpoint,
        "iterations_done": checkpoint,
        "history": history,
        "config": to_dict(config),
    }


def planner_method(spec: dict) -> dict:
    """A planner-only method (``apexjax plan --out`` files, one per seed)."""
    runs = [json.loads(_path(e["plan"]).read_text()) for e in spec["seeds"]]
    final = {"expert_return": [float(r["mean_return"]) for r in runs]}
    if all(r.get("success") is not None for r in runs):
        final["expert_success"] = [float(statistics.mean(r["success"])) for r in runs]
    return {
        "planner_only": True,
        "seeds": [r["seed"] for r in runs],
        "commands": spec.get("command"),
        "episodes_per_seed": [len(r["returns"]) for r in runs],
        "expert_returns": [r["returns"] for r in runs],
        "compile_s": statistics.median(r["compile_s"] for r in runs),
        "train_s": None,
        "eval_s": sum(r["run_s"] for r in runs),
        "time_per_control_step_s": [r["time_per_step_s"] for r in runs],
        "planner_simulated_per_step": runs[0]["simulated_steps_per_control_step"],
        "initial_eval": {},
        "final_eval": final,
        "history": [],
        "config": {"planner": runs[0]["config"], "task": runs[0]["task_config"]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("spec", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, required=True)
    args = p.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    checkpoint = int(spec["checkpoint"])
    eval_episodes: set[int] = set()
    methods = {}
    for name, m in spec["methods"].items():
        if not m.get("seeds"):
            raise SystemExit(f"{args.spec}: method {name!r} lists no seeds")
        if m.get("planner_only"):
            methods[name] = planner_method(m)
        else:
            methods[name] = trained_method(
                spec["task"], spec["preset"], m, checkpoint, eval_episodes
            )
    seeds = sorted({s for m in methods.values() for s in m["seeds"]})
    out = {
        "command": " ".join(["python", "experiments/paper_table.py", *(argv or sys.argv[1:])]),
        "environment": environment_info(),
        "task": spec["task"],
        "seeds": seeds,
        "preset": spec.get("preset"),
        # APEX's budget where it ran (the other methods' differ by the policy candidates)
        "reduction_vs_paper": methods.get("apex", {}).get("reduction_vs_paper"),
        "eval_episodes": sorted(eval_episodes)[0] if len(eval_episodes) == 1 else None,
        "final_eval_checkpoint": checkpoint,
        "notes": spec.get("notes", []),
        "methods": methods,
    }
    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

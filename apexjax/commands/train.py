"""``apexjax train``: APEX training on a task, into a run directory (``--resume`` continues)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from apexjax.configs import (
    ConfigError,
    build_checked,
    parse_override_values,
    parse_overrides,
)


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="cartpole_swingup", help="task name (see apexjax.envs)")
    p.add_argument("--run-dir", type=pathlib.Path, default=None, help="default: runs/train-TASK")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="TrainConfig override, repeatable; sub-configs as planner.FIELD, policy.FIELD, "
        "guidance.FIELD (e.g. --set iterations=5 --set planner.population=64)",
    )


def build_config(task: str, items: list[str]):
    """TrainConfig from ``--set`` items (validated; nothing compiles)."""
    from apexjax.commands.plan import DEFAULT_BETA
    from apexjax.loop import TrainConfig

    top, sub = [], {"planner": [], "policy": [], "guidance": []}
    for item in items:
        key = item.split("=", 1)[0]
        if "." in key:
            group, rest = item.split(".", 1)
            if group not in sub:
                raise ConfigError(
                    f"TrainConfig: unknown group {group!r} in {item!r}; allowed: {sorted(sub)}"
                )
            sub[group].append(rest)
        else:
            top.append(item)
    base = TrainConfig(task=task)
    base = dataclasses.replace(
        base, planner=dataclasses.replace(base.planner, beta=DEFAULT_BETA.get(task, 2.0))
    )
    # Sub-configs first, then ONE build of the whole config, so that checks across groups
    # (e.g. guidance.mode against expert_data) see every override at once.
    values = parse_override_values(TrainConfig, top)
    for g, v in sub.items():
        if v:
            values[g] = parse_overrides(type(getattr(base, g)), v, base=getattr(base, g))
    return build_checked(base, values)


def run(args: argparse.Namespace) -> int:
    from apexjax import envs

    envs.config_class(args.task)  # unknown task: one clear error before anything else
    config = build_config(args.task, args.set)
    run_dir = args.run_dir or pathlib.Path("runs") / f"train-{args.task}"

    from apexjax.train import train

    def progress(it: int, row: dict[str, float]) -> None:
        keys = ("expert_return", "policy_return", "expert_success", "policy_success")
        shown = "  ".join(f"{k} {row[k]:.2f}" for k in keys if k in row)
        print(
            f"iter {it}/{config.iterations}  {shown}  lambda {row['lambda_mean']:.3f}  "
            f"loss {row['loss']:.4f}  {row['seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    print(f"train {config.task} -> {run_dir} (compiling...)", file=sys.stderr, flush=True)
    summary = train(config, run_dir, resume=args.resume, callback=progress)
    print(json.dumps(summary["final"], indent=2))
    return 0

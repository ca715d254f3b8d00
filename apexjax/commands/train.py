"""``apexjax train``: APEX training on a task, into a run directory (``--resume`` continues)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="split the episodes over N local devices (sets num_devices; on CPU the command "
        "creates N host devices itself)",
    )
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


def request_host_devices(n: int) -> None:
    """Asks XLA for ``n`` CPU host devices, unless the user's ``XLA_FLAGS`` already say how
    many. Only the command line does this (before JAX creates its backends); the library
    never touches ``XLA_FLAGS``. Harmless on GPU: it adds CPU devices that go unused."""
    flags = os.environ.get("XLA_FLAGS", "")
    if n > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def run(args: argparse.Namespace) -> int:
    items = list(args.set)
    if args.devices is not None:  # before anything creates JAX's backends
        if args.devices < 1:
            raise ConfigError(f"--devices: must be >= 1, got {args.devices}")
        items.append(f"num_devices={args.devices}")
        request_host_devices(args.devices)
    from apexjax import envs

    envs.config_class(args.task)  # unknown task: one clear error before anything else
    config = build_config(args.task, items)
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

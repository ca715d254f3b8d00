"""``apexjax eval RUN_DIR``: the trained policy alone vs the guided expert, N episodes, JSON.

The run's checkpoint restores onto any device count that divides the run's ``num_envs``
and the episodes (``--devices``; default: the count the run was saved with).
"""

from __future__ import annotations

import argparse
import json
import pathlib


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="split the episodes over N local devices (default: the run's own count; on CPU "
        "the command creates the host devices itself)",
    )
    p.add_argument("--out", type=pathlib.Path, default=None, help="default: RUN_DIR/eval.json")


def run(args: argparse.Namespace) -> int:
    from apexjax.commands.train import request_host_devices, saved_num_devices
    from apexjax.configs import ConfigError

    if args.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices: must be >= 1, got {args.devices}")
    devices = args.devices if args.devices is not None else saved_num_devices(args.run_dir) or 1
    if args.episodes % devices:
        raise ConfigError(
            f"--episodes: {args.episodes} cannot be split evenly over {devices} devices; "
            f"use a multiple of {devices} (or pass --devices)"
        )
    request_host_devices(devices)  # before JAX starts its backends
    import jax

    from apexjax.loop import build_task, make_evaluate, metrics_to_python
    from apexjax.train import load_checkpoint

    config, state = load_checkpoint(args.run_dir, devices)
    task = build_task(config)
    metrics = make_evaluate(config, task, args.episodes)(
        state.policy, jax.random.PRNGKey(args.seed), state.guidance_weight
    )
    m = metrics_to_python(metrics)
    out = {
        "run_dir": str(args.run_dir),
        "task": config.task,
        "backend": getattr(task, "backend", None),
        "episodes": args.episodes,
        "devices": devices,
        "iteration": int(state.iteration),
        "policy_return": m["policy_return"],
        "expert_return": m["expert_return"],
        "policy_success": m.get("policy_success"),
        "expert_success": m.get("expert_success"),
    }
    path = args.out or args.run_dir / "eval.json"
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0

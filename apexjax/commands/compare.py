"""``apexjax compare RUN_DIR``: the planner alone, the policy alone and the policy with a
small planner, on the same fresh start states (:mod:`apexjax.compare`).

Prints one table (success with n, return mean ± std, simulated steps and wall time per
control step, compile time) and writes JSON with the command, task, backend, versions and
hardware to ``RUN_DIR/compare.json`` (re-written by every compare of the run) or
``--out FILE``, which must not exist unless ``--force`` (as ``apexjax eval``).
``--checkpoint`` picks the checkpoint as ``apexjax eval`` does. The episodes run on one
device, batched.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=8, help="episodes of each controller")
    p.add_argument("--seed", type=int, default=1, help="PRNG seed of the start states")
    p.add_argument(
        "--checkpoint",
        default="last",
        metavar="last|best|N",
        help="which checkpoint: last (default; the newest that reads back), best (highest "
        "policy-alone return in the run's metrics.jsonl) or iteration N",
    )
    p.add_argument(
        "--small-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="the small planner's population as a fraction of the run's, in (0, 1] "
        "(default 0.1; at least 4, elites scaled alike)",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="default: RUN_DIR/compare.json (re-written by each compare of the run); an "
        "existing --out file needs --force",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file")


def check_args(args: argparse.Namespace) -> pathlib.Path:
    """ConfigError for a bad argument (before anything is loaded or compiled); returns the
    output path."""
    from apexjax.commands.eval import checkpoint_arg
    from apexjax.configs import ConfigError
    from apexjax.train import check_run_dir_path

    if args.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
    if args.seed < 0:
        raise ConfigError(f"--seed: must be >= 0, got {args.seed}")
    f = args.small_fraction
    if not (math.isfinite(f) and 0 < f <= 1):
        raise ConfigError(f"--small-fraction: must be in (0, 1], got {f}")
    checkpoint_arg(args.checkpoint)
    check_run_dir_path(args.run_dir)
    if args.out is not None:  # as export and eval: an explicit file is never replaced silently
        if args.out.is_dir():
            raise ConfigError(f"--out: {args.out} is a directory; give a file name")
        if args.out.exists() and not args.force:
            raise ConfigError(f"--out: {args.out} exists; pass --force to replace it")
    return args.out or args.run_dir / "compare.json"


def _command(args: argparse.Namespace) -> str:
    parts = ["apexjax", "compare", str(args.run_dir), "--episodes", str(args.episodes)]
    parts += ["--seed", str(args.seed), "--checkpoint", str(args.checkpoint)]
    parts += ["--small-fraction", f"{args.small_fraction:g}"]
    if args.out is not None:
        parts += ["--out", str(args.out)] + (["--force"] if args.force else [])
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from apexjax.commands.eval import checkpoint_arg

    path = check_args(args)
    checkpoint = checkpoint_arg(args.checkpoint)
    import jax

    from apexjax import compare
    from apexjax.bench.hardware import environment_info
    from apexjax.cli import import_run_modules
    from apexjax.loop import build_task
    from apexjax.train import load_checkpoint

    import_run_modules(args.run_dir)  # the modules that register the run's task
    config, state = load_checkpoint(args.run_dir, 1, checkpoint=checkpoint)
    task = build_task(config)
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.episodes)
    print(
        f"compare {config.task} ({getattr(task, 'backend', None) or 'jax'} physics), checkpoint "
        f"{int(state.iteration)}: {args.episodes} episodes x {task.episode_length} steps of each "
        "controller",
        file=sys.stderr,
        flush=True,
    )
    result = compare.compare(
        config,
        task,
        state.policy,
        keys,
        state.guidance_weight,
        small_fraction=args.small_fraction,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    out = {
        "command": _command(args),
        "date": time.strftime("%Y-%m-%d"),
        "run_dir": str(args.run_dir),
        "task": config.task,
        "backend": getattr(task, "backend", None),
        "checkpoint": checkpoint,
        "iteration": int(state.iteration),
        "seed": args.seed,
        **result,
        "environment": environment_info(),
    }
    from apexjax.commands.eval import _write  # atomic, as eval writes its JSON

    _write(path, json.dumps(out, indent=2) + "\n")
    print(compare.format_table(out))
    if not out["same_start_states"]:
        print("warning: the controllers did not start from the same states", file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    return 0

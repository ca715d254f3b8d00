"""``apexjax export RUN_DIR``: the trained policy as a NumPy-only ``.npz`` for deployment.

``--checkpoint`` picks which one: ``last`` (default; an unreadable newest one is skipped
with a warning), ``best`` (the highest policy-alone return in the run's metrics) or an
iteration number. An existing ``--out`` file (the default ``RUN_DIR/policy.npz`` too) is
replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import pathlib


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, default=None, help="default: RUN_DIR/policy.npz")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument(
        "--checkpoint",
        default="last",
        metavar="last|best|N",
        help="which checkpoint to export: last (default; the newest that reads back), best "
        "(highest policy-alone return in the run's metrics.jsonl) or iteration N",
    )


def run(args: argparse.Namespace) -> int:
    from apexjax.configs import ConfigError

    out = args.out or args.run_dir / "policy.npz"
    if out.suffix != ".npz":
        raise ConfigError(f"--out: must end in .npz, got {str(out)!r}")
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a directory; give a file name ending in .npz")
    if out.exists() and not args.force:
        raise ConfigError(f"--out: {out} exists; pass --force to replace it")
    from apexjax.commands.eval import checkpoint_arg
    from apexjax.train import check_run_dir_path

    check_run_dir_path(args.run_dir)
    checkpoint = checkpoint_arg(args.checkpoint)

    from apexjax.cli import import_run_modules
    from apexjax.export import export_policy
    from apexjax.train import load_checkpoint

    import_run_modules(args.run_dir)  # the modules that register the run's task
    config, state = load_checkpoint(args.run_dir, checkpoint=checkpoint)
    path = export_policy(out, state.policy, config.policy)
    info = {
        "run_dir": str(args.run_dir),
        "task": config.task,
        "checkpoint": checkpoint,
        "iteration": int(state.iteration),
        "out": str(path),
        "load_with": "apexjax.export.load_numpy_policy(path)(obs) (NumPy only)",
    }
    print(json.dumps(info, indent=2))
    return 0

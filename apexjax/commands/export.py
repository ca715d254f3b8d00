"""``apexjax export RUN_DIR``: the trained policy as a NumPy-only ``.npz`` for deployment."""

from __future__ import annotations

import argparse
import json
import pathlib


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, default=None, help="default: RUN_DIR/policy.npz")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from apexjax.configs import ConfigError

    out = args.out or args.run_dir / "policy.npz"
    if out.suffix != ".npz":
        raise ConfigError(f"--out: must end in .npz, got {str(out)!r}")
    if out.exists() and not args.force:
        raise ConfigError(f"--out: {out} exists; pass --force to replace it")

    from apexjax.export import export_policy
    from apexjax.train import load_checkpoint

    config, state = load_checkpoint(args.run_dir)
    path = export_policy(out, state.policy, config.policy)
    info = {
        "run_dir": str(args.run_dir),
        "task": config.task,
        "iteration": int(state.iteration),
        "out": str(path),
        "load_with": "apexjax.export.load_numpy_policy(path)(obs) (NumPy only)",
    }
    print(json.dumps(info, indent=2))
    return 0

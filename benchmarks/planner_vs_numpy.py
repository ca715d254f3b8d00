"""Planner vs the original design: apexjax's iCEM against a NumPy iCEM on native MuJoCo.

For each device count (default 1 and 2 XLA host devices, each in its own subprocess, as
host devices must exist before JAX starts), :func:`apexjax.bench.planner.run` runs in
one process: closed-loop MPC with apexjax's iCEM on the chosen physics backend
(``--backend``: native by default on a CPU, or MJX; episodes vmapped, split over the devices), the reference NumPy iCEM of :mod:`apexjax.reference.numpy_icem` on native
MuJoCo (``mujoco.rollout`` threads) with the same options, task and start states, and
raw batched physics of both at the planner's batch. Writes every figure as JSON and
prints the markdown table.

    python benchmarks/planner_vs_numpy.py --task cartpole_swingup --devices 1,2 \\
        --out benchmarks/results/planner_vs_numpy.json
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from apexjax.bench import section_to_dict, to_markdown
from apexjax.bench.planner import run_in_subprocess

_OUT = pathlib.Path(__file__).parent / "results" / "planner_vs_numpy.json"


def main(argv: list[str] | None = None) -> int:
    from benchmarks._common import environment_info, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--devices", default="1,2", help="comma-separated device counts")
    p.add_argument("--episodes", type=int, default=None, help="episodes per planner (default 4)")
    p.add_argument("--steps", type=int, default=None, help="control steps (default: episode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nthread", type=int, default=None, help="NumPy rollout threads")
    p.add_argument("--repeats", type=int, default=3, help="timed raw-physics calls")
    p.add_argument("--quick", action="store_true", help="small budget (population 16, h 15)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="ICEMConfig override (default: the budget of apexjax plan for the task)",
    )
    p.add_argument("--backend", default="auto", choices=("auto", "mjx", "native"))
    p.add_argument("--note", default="", help="context stored with the results (e.g. load)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per device count")
    p.add_argument("--out", type=pathlib.Path, default=_OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cmd = "python benchmarks/planner_vs_numpy.py " + " ".join(argv or sys.argv[1:])
    sections = []
    for n in (int(x) for x in args.devices.split(",")):
        logging.info("%s: %d device(s)...", args.task, n)
        section = run_in_subprocess(
            args.task,
            n,
            quick=args.quick,
            seed=args.seed,
            episodes=args.episodes,
            num_steps=args.steps,
            planner_set=args.set,
            nthread=args.nthread,
            repeats=args.repeats,
            timeout=args.timeout,
            backend=args.backend,
        )
        sections.append(section)
        doc = {
            "command": cmd.strip(),
            "environment": environment_info(),
            "note": args.note,
            "sections": [section_to_dict(s) for s in sections],
        }
        write_json(args.out, doc)  # after every device count, so a cut run keeps what finished
    print(to_markdown(sections))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

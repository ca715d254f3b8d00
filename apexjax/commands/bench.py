"""``apexjax bench``: the benchmark sections side by side, one JSON and a Markdown table.

Sections (``apexjax.bench.<name>``): ``planner`` (iCEM on MJX vs a NumPy iCEM on native
MuJoCo, and vs raw batched physics; once per ``--devices`` count, each count in its own
process), ``policy`` (distilled policy latency vs the planner's, JAX and NumPy export),
``compile`` (cold vs warm persistent compilation cache), ``learning`` (APEX vs Brax PPO to
a return threshold). ``--report`` re-renders the table from saved JSON files.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from apexjax.configs import ConfigError

SECTIONS = ("planner", "policy", "compile", "learning")
DEFAULT_SECTIONS = ("planner", "policy", "compile")


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="cartpole_swingup", help="task name (see apexjax.envs)")
    p.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated, from {', '.join(SECTIONS)} (learning takes tens of minutes "
        "on a CPU, so it runs only when named)",
    )
    p.add_argument(
        "--devices",
        default="1",
        help="comma-separated device counts for the planner section (CPU: host devices, "
        "each count in its own process)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds for the learning section")
    p.add_argument("--quick", action="store_true", help="tiny budgets (checks that it runs)")
    p.add_argument(
        "--out", type=pathlib.Path, default=None, help="JSON (default: runs/bench-TASK.json)"
    )
    p.add_argument("--md", type=pathlib.Path, default=None, help="also write the Markdown table")
    p.add_argument(
        "--report",
        nargs="+",
        type=pathlib.Path,
        default=None,
        metavar="JSON",
        help="no measuring: render the Markdown of these saved bench JSON files",
    )


def _parse_list(name: str, text: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ConfigError(f"{name}: empty list")
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise ConfigError(f"{name}: unknown {bad}; allowed: {', '.join(allowed)}")
    return items


def _header(d: dict) -> str:
    env = d.get("environment", {})
    return (
        f"Measured on {env.get('hardware', '?')}, jax {env.get('versions', {}).get('jax')}, "
        f"mujoco {env.get('versions', {}).get('mujoco')}, {d.get('date', '')}; "
        f"command: `{d.get('command', '')}`\n"
    )


def report(paths: list[pathlib.Path]) -> str:
    """Markdown of saved bench JSON files, in order."""
    from apexjax.bench import section_from_dict, to_markdown

    parts = []
    for path in paths:
        try:
            d = json.loads(path.read_text())
            sections = [section_from_dict(x) for x in d["sections"]]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"--report: {path} is not a bench JSON ({e})") from None
        parts.append(to_markdown(sections, _header(d)))
    return "\n".join(parts)


def run(args: argparse.Namespace) -> int:
    if args.report:
        text = report(args.report)
        if args.md:
            args.md.write_text(text)
        print(text)
        return 0
    sections = _parse_list("--sections", args.sections, SECTIONS)
    try:
        devices = [int(x) for x in _parse_list("--devices", args.devices)]
    except ValueError:
        raise ConfigError(
            f"--devices: comma-separated integers >= 1, got {args.devices!r}"
        ) from None
    if any(n < 1 for n in devices):
        raise ConfigError(f"--devices: every count must be >= 1, got {devices}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {args.seeds}")
    from apexjax import envs

    envs.check_task(args.task)  # unknown task: one clear error before anything runs
    if "planner" in sections and (envs.is_adapter(args.task) or envs.is_user_task(args.task)):
        # the planner section's reference is a NumPy iCEM on native MuJoCo twins of the
        # shipped tasks; a wrapped env or a task of your own has none
        why = (
            f"the planner section compares against NumPy twins of the shipped tasks, and "
            f"{args.task!r} has none"
        )
        if args.sections != ",".join(DEFAULT_SECTIONS):
            raise ConfigError(f"--sections: {why}; drop planner (e.g. --sections policy,compile)")
        sections = [s for s in sections if s != "planner"]
        print(f"bench {args.task}: no planner section ({why})", file=sys.stderr, flush=True)

    from apexjax.bench import section_to_dict, to_markdown
    from apexjax.bench.hardware import bench_result, write_json

    out_path = args.out or pathlib.Path("runs") / f"bench-{args.task}.json"
    command = "apexjax " + " ".join(sys.argv[1:])
    result = bench_result([], command, task=args.task, quick=args.quick)
    done = []
    for name in sections:
        print(f"bench {args.task}: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if name == "planner":
            from apexjax.bench import planner

            for n in devices:
                done.append(planner.run_in_subprocess(args.task, n, quick=args.quick))
        elif name == "policy":
            from apexjax.bench import policy

            done.append(policy.run(args.task, quick=args.quick))
        elif name == "compile":
            from apexjax.bench import compile as compile_

            done.append(compile_.run(args.task, quick=args.quick))
        else:
            from apexjax.bench import learning

            done.append(learning.run(args.task, quick=args.quick, seeds=args.seeds))
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        result["sections"] = [section_to_dict(s) for s in done]
        write_json(out_path, result)  # after every section: a cut-off run keeps what finished
    text = to_markdown(done, _header(result))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    print(text)
    print(f"wrote {out_path}", file=sys.stderr)
    return 0

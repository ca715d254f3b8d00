"""``apexjax eval RUN_DIR``: the trained policy alone vs the guided expert, N episodes, JSON.

``--expert-episodes`` sets the expert's count apart (0: the policy alone only; on the
paper's tasks an expert episode takes minutes, a policy episode well under a second).

The run's checkpoint restores onto any device count that divides the run's ``num_envs``
and the episodes (``--devices``; default: the count the run was saved with).
``--episode-length`` judges the policy over another episode length than the run trained on
(0: the task's own). ``--checkpoint`` picks which one: ``last`` (default; an unreadable newest one is skipped
with a warning), ``best`` (the highest policy-alone return in the run's metrics) or an
iteration number. The result goes to ``RUN_DIR/eval.json`` (re-written by every eval of the
run) or ``--out FILE``, which must not exist unless ``--force`` (as ``apexjax export``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys

from apexjax.commands.train import COMPILE_NOTE, Progress


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=8, help="episodes of the policy alone")
    p.add_argument(
        "--expert-episodes",
        type=int,
        default=None,
        metavar="N",
        help="episodes of the guided expert (default: as many as --episodes; 0 leaves the "
        "expert out: on the paper's tasks its episodes cost minutes each, the policy's "
        "seconds)",
    )
    p.add_argument(
        "--episode-length",
        type=int,
        default=None,
        metavar="T",
        help="control steps per evaluation episode (default: the run's own; 0: the task's "
        "full length, e.g. a humanoid trained on 300-step episodes, judged over 1000)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="split the episodes over N local devices (default: the run's own count; on CPU "
        "the command creates the host devices itself)",
    )
    p.add_argument(
        "--checkpoint",
        default="last",
        metavar="last|best|N",
        help="which checkpoint to evaluate: last (default; the newest that reads back), best "
        "(highest policy-alone return in the run's metrics.jsonl) or iteration N",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="default: RUN_DIR/eval.json (re-written by each eval of the run); an existing "
        "--out file needs --force",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from apexjax.commands.train import request_host_devices, saved_num_devices
    from apexjax.configs import ConfigError

    if args.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
    expert_episodes = args.episodes if args.expert_episodes is None else args.expert_episodes
    if expert_episodes < 0:
        raise ConfigError(f"--expert-episodes: must be >= 0, got {expert_episodes}")
    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices: must be >= 1, got {args.devices}")
    if args.episode_length is not None and args.episode_length < 0:
        raise ConfigError(f"--episode-length: must be >= 0, got {args.episode_length}")
    from apexjax.train import check_run_dir_path

    check_run_dir_path(args.run_dir)
    checkpoint = checkpoint_arg(args.checkpoint)
    path = args.out or args.run_dir / "eval.json"
    if args.out is not None:  # as export: an explicit file is never replaced silently
        if args.out.is_dir():
            raise ConfigError(f"--out: {args.out} is a directory; give a file name")
        if args.out.exists() and not args.force:
            raise ConfigError(f"--out: {args.out} exists; pass --force to replace it")
    devices = args.devices if args.devices is not None else saved_num_devices(args.run_dir) or 1
    for flag, count in (("--episodes", args.episodes), ("--expert-episodes", expert_episodes)):
        if count % devices:
            raise ConfigError(
                f"{flag}: {count} cannot be split evenly over {devices} devices; "
                f"use a multiple of {devices} (or pass --devices)"
            )
    request_host_devices(devices)  # before JAX starts its backends
    import jax

    from apexjax.cli import import_run_modules
    from apexjax.loop import build_task, make_evaluate, metrics_to_python
    from apexjax.train import load_checkpoint

    import_run_modules(args.run_dir)  # the modules that register the run's task
    config, state = load_checkpoint(args.run_dir, devices, checkpoint=checkpoint)
    if args.episode_length is not None:
        config = dataclasses.replace(config, episode_length=args.episode_length)
    task = build_task(config)
    bar = Progress(2, unit="stage")
    try:
        with bar.logging_to_bar():
            bar.stage("compiling the evaluation", COMPILE_NOTE)
            evaluate = make_evaluate(config, task, args.episodes, expert_episodes)
            inputs = (state.policy, jax.random.PRNGKey(args.seed), state.guidance_weight)
            compiled = evaluate.lower(*inputs).compile()
            bar.advance()
            expert_text = f", {expert_episodes} of the expert" if expert_episodes else ""
            bar.stage(
                f"evaluating checkpoint {int(state.iteration)}: {args.episodes} episodes of the "
                f"policy alone{expert_text}"
            )
            m = metrics_to_python(compiled(*inputs))
            bar.advance()
    finally:
        bar.close()
    out = {
        "run_dir": str(args.run_dir),
        "task": config.task,
        "backend": getattr(task, "backend", None),
        "episodes": args.episodes,
        "expert_episodes": expert_episodes,
        "episode_length": task.episode_length,
        "checkpoint": checkpoint,
        "devices": devices,
        "iteration": int(state.iteration),
        "policy_return": m["policy_return"],
        "expert_return": m.get("expert_return"),
        "policy_success": m.get("policy_success"),
        "expert_success": m.get("expert_success"),
    }
    _write(path, json.dumps(out, indent=2))
    print(_summary_line(out), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))
    return 0


def checkpoint_arg(text: str) -> str | int:
    """``--checkpoint``: ``last``, ``best`` or an iteration number >= 1."""
    from apexjax.configs import ConfigError

    value = text.strip().lower()
    if value in ("last", "best"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ConfigError(f"--checkpoint: expected last, best or an iteration number, got {text!r}")


def _summary_line(out: dict) -> str:
    """What the JSON says, for a reader: returns and successes with their episode count."""
    parts = []
    for who, key, n in (
        ("policy alone", "policy", out["episodes"]),
        ("expert", "expert", out.get("expert_episodes", out["episodes"])),
    ):
        if not n:
            continue
        text = f"{who}: return {out[f'{key}_return']:.4g}"
        success = out.get(f"{key}_success")
        if success is not None:
            text += f", success {round(success * n)}/{n} episodes"
        else:
            text += f" (mean of {n} episodes)"
        parts.append(text)
    return f"checkpoint {out['iteration']} ({out['checkpoint']}): " + "; ".join(parts)


def _write(path: pathlib.Path, text: str) -> None:
    """Writes ``path`` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""``apexjax plan``: run the iCEM planner closed-loop (MPC) on a task and report returns."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

from apexjax.configs import ConfigError, parse_overrides, to_dict


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="cartpole_swingup", help="task name (see apexjax.envs)")
    p.add_argument("--episodes", type=int, default=2, help="episodes run in parallel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="control steps (default: episode)")
    p.add_argument("--cem", action="store_true", help="plain CEM preset (beta 0, improvements off)")
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="the planner budget (and episode length) of the task's training preset "
        "(apexjax.presets: paper, cpu, smoke); with --cem, plain CEM at the same simulated "
        "steps per control step; --set applies on top",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="ICEMConfig override, repeatable (e.g. --set population=100 --set beta=0.5)",
    )
    p.add_argument(
        "--task-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="task config override, repeatable (e.g. --task-set backend=mjx: the physics, "
        "auto|mjx|native; auto = native on CPU)",
    )
    p.add_argument("--chunk", type=int, default=10, help="control steps between progress lines")
    p.add_argument("--out", type=pathlib.Path, default=None, help="write results as JSON")
    p.add_argument(
        "--video",
        type=pathlib.Path,
        default=None,
        metavar="PATH",
        help="render episode 0 to PATH (.mp4 or .gif; see apexjax render)",
    )


def task_overrides(task: str, items: list[str]) -> dict[str, Any]:
    """``--task-set`` items as the overrides of ``task`` for ``apexjax.envs.make``.

    A shipped or registered task checks them against its config class. A Brax/Playground
    adapter has none (its overrides are Python values: cost and success functions, the
    env's own arguments), so it takes no ``--task-set`` items.

    Raises:
      ConfigError: an unknown task, a bad item, or any item for an adapter.
    """
    from apexjax import envs  # imported here: keeps `apexjax --help` fast

    envs.check_task(task)
    if envs.is_adapter(task):
        if items:
            raise ConfigError(
                f"--task-set: task {task!r} wraps another library's env and takes no task "
                f"overrides on the command line (got {list(items)}); from Python, "
                f"apexjax.envs.make({task!r}, ...) takes the adapter's keywords and the env's "
                "own arguments"
            )
        return {}
    return to_dict(parse_overrides(envs.config_class(task), items))


def run(args: argparse.Namespace) -> int:
    if args.video is not None:
        if args.video.suffix.lower() not in (".mp4", ".gif"):
            raise ConfigError(f"--video: {str(args.video)!r} must end in .mp4 or .gif")
        from apexjax.commands.render import prepare_gl

        prepare_gl()  # MUJOCO_GL before mujoco is imported
    from apexjax import envs  # imported here: keeps `apexjax --help` fast
    from apexjax.planning import icem

    if args.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {args.steps}")
    from apexjax import presets

    config = presets.plan_config(args.task, args.preset, args.set, cem=args.cem)
    preset_steps = 0
    if args.preset is not None:
        values = presets.preset_overrides(args.task, args.preset)
        preset_steps = int(values.get("episode_length", 0))  # type: ignore[arg-type]
    task = envs.make(args.task, **task_overrides(args.task, args.task_set))

    import jax
    import numpy as np

    from apexjax.planning.mpc import run_mpc

    if args.video is not None:
        from apexjax.render import check_gl

        check_gl(task)  # a missing GL library fails now, not after the episodes

    steps = args.steps or preset_steps or task.episode_length
    print(
        f"plan {args.task} ({getattr(task, 'backend', 'mjx')} physics): {args.episodes} "
        f"episode(s) x {steps} steps, "
        f"{icem.simulated_per_step(config)} simulated steps per control step; compiling...",
        file=sys.stderr,
        flush=True,
    )

    def progress(done: int, total: int, seconds: float) -> None:
        print(
            f"  step {done}/{total}  {seconds / done * 1e3:.1f} ms/step",
            file=sys.stderr,
            flush=True,
        )

    r = run_mpc(
        config,
        task,
        jax.random.key(args.seed),
        args.episodes,
        num_steps=steps,
        chunk_size=args.chunk,
        callback=progress,
    )
    returns = np.asarray(r["returns"])
    print(f"compile {r['compile_s']:.1f} s, {r['time_per_step_s'] * 1e3:.1f} ms per control step")
    print(f"return  {returns.mean():.2f} +- {returns.std():.2f}  ({np.round(returns, 2).tolist()})")
    if task.has_success:
        print(f"success {np.asarray(r['success']).mean():.2f}  ({r['success'].tolist()})")
    if int(np.sum(r["nonfinite_steps"])):
        print(f"warning: {int(np.sum(r['nonfinite_steps']))} step(s) with no finite candidate")
    if args.out is not None:
        out = dict(
            task=args.task,
            backend=getattr(task, "backend", None),
            seed=args.seed,
            preset=args.preset,
            config=to_dict(config),
            task_config=to_dict(task.config) if hasattr(task, "config") else None,
            returns=returns.tolist(),
            success=np.asarray(r["success"]).tolist() if task.has_success else None,
            mean_return=float(returns.mean()),
            compile_s=r["compile_s"],
            run_s=r["run_s"],
            time_per_step_s=r["time_per_step_s"],
            simulated_steps_per_control_step=r["simulated_steps_per_control_step"],
            nonfinite_steps=np.asarray(r["nonfinite_steps"]).tolist(),
            actions=np.asarray(r["actions"]).tolist(),
            costs=np.asarray(r["costs"]).tolist(),
            device=str(jax.devices()[0]),
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
    if args.video is not None:
        from apexjax.commands.render import write_mpc_video

        key = jax.random.key(args.seed)
        path = write_mpc_video(task, key, args.episodes, r["actions"][0], r["costs"][0], args.video)
        print(f"wrote {path}")
    return 0

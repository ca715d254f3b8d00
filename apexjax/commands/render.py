"""``apexjax render RUN_DIR``: videos of a trained run's policy alone and of its expert.

From the same fresh start state(s) the policy acts alone (closed loop, no planner) and the
guided planner (the training expert, with the run's guidance weight) acts; both are
rendered offscreen and written to ``--out`` (default ``RUN_DIR/render``): ``policy.mp4``,
``expert.mp4``, ``side_by_side.mp4`` (policy left, expert right), ``filmstrip.png`` (``--frames``
frames evenly spaced, rows: policy, expert, for each episode) and ``render.json`` (returns,
success, frames, paths). With ``--episodes N`` the videos play the episodes one after
another.

Headless (no ``DISPLAY``) the command sets ``MUJOCO_GL=egl`` if it is unset (``osmesa``
where only OSMesa is installed) before MuJoCo is imported.
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import os
import pathlib
import sys
from collections.abc import Callable, MutableMapping

from apexjax.configs import ConfigError

# what each headless MUJOCO_GL platform needs on a Debian/Ubuntu system
_GL_LIBS = {
    "egl": ("EGL", "libEGL", "apt-get install libegl1 libgl1"),
    "osmesa": ("OSMesa", "libOSMesa", "apt-get install libosmesa6"),
}


def choose_gl(
    environ: MutableMapping[str, str] | None = None,
    find_library: Callable[[str], str | None] = ctypes.util.find_library,
) -> str | None:
    """Picks MuJoCo's OpenGL platform for offscreen rendering, as the command line does
    (call it before ``mujoco`` is first imported): a set ``MUJOCO_GL`` is kept; with a
    ``DISPLAY`` (or off Linux) MuJoCo's default stays; otherwise ``MUJOCO_GL`` becomes
    ``egl``, or ``osmesa`` where libEGL is missing but libOSMesa is there (with neither,
    ``egl``: rendering then fails with a message naming what to install).

    Returns the value of ``MUJOCO_GL`` afterwards (None where unset)."""
    env = os.environ if environ is None else environ
    if env.get("MUJOCO_GL"):
        return env["MUJOCO_GL"]
    if env.get("DISPLAY") or not sys.platform.startswith("linux"):
        return None
    gl = "egl"
    if not find_library("EGL") and find_library("OSMesa"):
        gl = "osmesa"
    env["MUJOCO_GL"] = gl
    return gl


def prepare_gl() -> None:
    """:func:`choose_gl` (unless MuJoCo is already imported, when it is too late) and an
    import of ``mujoco``: a ConfigError naming the system library to install where MuJoCo
    cannot load the chosen platform."""
    if "mujoco" not in sys.modules:
        choose_gl()
    try:
        import mujoco  # noqa: F401
    except (ImportError, AttributeError, RuntimeError) as e:
        gl = os.environ.get("MUJOCO_GL", "").strip().lower()
        if gl not in _GL_LIBS:
            raise
        name, lib, cmd = _GL_LIBS[gl]
        raise ConfigError(
            f"mujoco cannot load its {name} renderer (MUJOCO_GL={gl}): "
            f"{type(e).__name__}: {e}. Install {lib}: `{cmd}`, or set MUJOCO_GL to another "
            f"platform ({', '.join(k for k in _GL_LIBS if k != gl)})"
        ) from None


def _positive(name: str, v: int | None) -> None:
    if v is not None and v < 1:
        raise ConfigError(f"--{name}: must be >= 1, got {v}")


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, default=None, help="default: RUN_DIR/render")
    p.add_argument("--episodes", type=int, default=1, help="episodes of each controller")
    p.add_argument("--seed", type=int, default=1, help="PRNG seed of the start states")
    p.add_argument("--gif", action="store_true", help="write GIFs instead of MP4s")
    p.add_argument("--width", type=int, default=320, help="frame width in pixels")
    p.add_argument("--height", type=int, default=240, help="frame height in pixels")
    p.add_argument("--frames", type=int, default=8, metavar="K", help="frames per filmstrip row")
    p.add_argument(
        "--camera",
        default=None,
        metavar="NAME",
        help="a named camera of the model (default: the task's view, apexjax.render.TASK_CAMERAS)",
    )
    p.add_argument("--fps", type=float, default=None, help="default: real time (1 / task dt)")


def run(args: argparse.Namespace) -> int:
    for name in ("episodes", "width", "height", "frames"):
        _positive(name, getattr(args, name))
    if args.fps is not None and not args.fps > 0:
        raise ConfigError(f"--fps: must be > 0, got {args.fps}")
    prepare_gl()

    import jax
    import numpy as np

    from apexjax import render
    from apexjax.loop import build_task
    from apexjax.train import load_checkpoint

    config, state = load_checkpoint(args.run_dir, 1)  # one device: a few episodes
    task = build_task(config)
    if getattr(task, "mj_model", None) is None:
        raise ConfigError(f"{args.run_dir}: task {config.task!r} is not a MuJoCo task to render")
    if args.camera is not None:
        names = [task.mj_model.camera(i).name for i in range(task.mj_model.ncam)]
        if args.camera not in names:
            raise ConfigError(f"--camera: {config.task} has no camera {args.camera!r}: {names}")
    render.check_gl(task)  # fail now, not after the episodes
    out = args.out or args.run_dir / "render"
    fps = args.fps or 1.0 / task.dt
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.episodes)
    print(
        f"render {config.task} ({getattr(task, 'backend', 'mjx')} physics): {args.episodes} "
        f"episode(s) x {task.episode_length} steps of the policy and of the expert; compiling...",
        file=sys.stderr,
        flush=True,
    )
    episodes = {
        "policy": render.policy_episodes(config, task, state.policy, keys),
        "expert": render.expert_episodes(config, task, state.policy, keys, state.guidance_weight),
    }
    frames = {
        name: [
            render.render_states(
                task, ep.states, width=args.width, height=args.height, camera=args.camera
            )
            for ep in eps
        ]
        for name, eps in episodes.items()
    }
    ext = ".gif" if args.gif else ".mp4"
    paths = {}
    for name, videos in frames.items():
        paths[name] = render.write_video(out / f"{name}{ext}", np.concatenate(videos), fps)
    both = render.side_by_side([np.concatenate(frames["policy"]), np.concatenate(frames["expert"])])
    paths["side_by_side"] = render.write_video(out / f"side_by_side{ext}", both, fps)
    rows = [frames[name][e] for e in range(args.episodes) for name in ("policy", "expert")]
    paths["filmstrip"] = render.write_image(
        out / "filmstrip.png", render.filmstrip(rows, args.frames)
    )
    result = {
        "run_dir": str(args.run_dir),
        "task": config.task,
        "backend": getattr(task, "backend", None),
        "iteration": int(state.iteration),
        "guidance_weight": float(state.guidance_weight),
        "seed": args.seed,
        "episodes": [
            {
                f"{name}_{field}": value
                for name in ("policy", "expert")
                for field, value in (
                    ("return", episodes[name][e].episode_return),
                    ("success", episodes[name][e].success),
                )
            }
            for e in range(args.episodes)
        ],
        "frames_per_episode": task.episode_length + 1,
        "fps": fps,
        "width": args.width,
        "height": args.height,
        "camera": args.camera,
        "filmstrip_rows": [
            f"{name} {e}" for e in range(args.episodes) for name in ("policy", "expert")
        ],
        "paths": {k: str(v) for k, v in paths.items()},
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }
    (out / "render.json").write_text(json.dumps(result, indent=2))
    for e, r in enumerate(result["episodes"]):
        line = (
            f"episode {e}: policy return {r['policy_return']:.2f}, expert {r['expert_return']:.2f}"
        )
        if task.has_success:
            line += f"; success policy {r['policy_success']}, expert {r['expert_success']}"
        print(line)
    print(f"wrote {', '.join(str(p) for p in paths.values())}, {out / 'render.json'}")
    return 0


def write_mpc_video(
    task,
    key,
    num_episodes: int,
    actions,
    costs,
    path: pathlib.Path,
    *,
    width: int = 320,
    height: int = 240,
) -> pathlib.Path:
    """Renders episode 0 of an :func:`apexjax.planning.mpc.run_mpc` call made with ``key``
    and ``num_episodes`` to ``path`` (.mp4 or .gif): its start state drawn as ``run_mpc``
    draws it, its executed ``actions`` ``[T, A]`` replayed. The replay's costs are checked
    against the run's ``costs`` ``[T]`` (a warning where they differ)."""
    import jax
    import numpy as np

    from apexjax import render

    k_reset = jax.random.split(key)[0]  # run_mpc: k_reset, k_plan = split(key)
    s0 = jax.jit(task.reset)(jax.random.split(k_reset, num_episodes)[0])
    states = render.replay(task, s0, actions)
    prev = jax.tree.map(lambda x: x[:-1], states)
    nxt = jax.tree.map(lambda x: x[1:], states)
    replayed = np.asarray(jax.jit(jax.vmap(task.cost))(prev, np.asarray(actions), nxt))
    if not np.allclose(replayed, np.asarray(costs), rtol=1e-3, atol=1e-4, equal_nan=True):
        print(
            f"warning: the rendered replay's return {-replayed.sum():.3f} differs from the "
            f"episode's {-np.sum(costs):.3f}",
            file=sys.stderr,
        )
    frames = render.render_states(task, states, width=width, height=height)
    return render.write_video(path, frames, 1.0 / task.dt)

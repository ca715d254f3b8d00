"""``apexjax render RUN_DIR``: videos of a trained run's policy alone and of its expert.

From the same fresh start state(s) the policy acts alone (closed loop, no planner) and the
guided planner (the training expert, with the run's guidance weight) acts; both are
rendered offscreen and written to ``--out`` (default ``RUN_DIR/render``): ``policy.mp4``,
``expert.mp4``, ``side_by_side.mp4`` (policy left, expert right), ``filmstrip.png`` (``--frames``
frames evenly spaced, rows: policy, expert, for each episode) and ``render.json`` (returns,
success, frames, paths). With ``--episodes N`` the videos play the episodes one after
another.

:func:`render_run` is the same from Python; ``apexjax train`` ends with
:func:`render_after_training` (small frames, a warning instead of a failure).

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
from typing import Any, TextIO

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


def choose_gl_for_training(
    environ: MutableMapping[str, str] | None = None,
    find_library: Callable[[str], str | None] = ctypes.util.find_library,
) -> str | None:
    """:func:`choose_gl` for ``apexjax train``, which renders only at its end (call it
    before MuJoCo is first imported): ``MUJOCO_GL`` is set only to a platform whose library
    is installed, so that a machine with neither trains as before, its render then failing
    with :class:`apexjax.render.RenderError` (one warning). Returns ``MUJOCO_GL``
    afterwards (None where unset)."""
    env = os.environ if environ is None else environ
    trial = dict(env)
    gl = choose_gl(trial, find_library)
    if not env.get("MUJOCO_GL") and gl in _GL_LIBS and find_library(_GL_LIBS[gl][0]):
        env["MUJOCO_GL"] = gl
    return env.get("MUJOCO_GL") or None


#: the end-of-training render (``apexjax train`` without ``--no-render``): the command's
#: default episode and filmstrip at a quarter of its pixels, to stay cheap
TRAIN_RENDER = {"width": 160, "height": 120}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def render_after_training(run_dir: pathlib.Path, stream: TextIO | None = None) -> dict | None:
    """The end of ``apexjax train``: :func:`render_run` of the finished run at
    :data:`TRAIN_RENDER` into ``RUN_DIR/render``, with one line on ``stream`` (default
    stderr) saying what was written. Never fails the training: without an offscreen
    OpenGL context (:class:`apexjax.render.RenderError`), or on any other error, one
    warning line (how to enable it; ``apexjax render RUN_DIR`` renders it later) and
    ``None``; a task that is not a MuJoCo task is skipped with one line."""
    stream = sys.stderr if stream is None else stream
    later = f"`apexjax render {run_dir}` renders it later"
    try:
        result = render_run(run_dir, stream=stream, **TRAIN_RENDER)
    except NotRenderableError as e:
        print(f"render: skipped ({_one_line(e)})", file=stream, flush=True)
        return None
    except Exception as e:  # a finished training run never fails because of its video
        from apexjax.render import RenderError

        if isinstance(e, RenderError):
            what = f"no offscreen OpenGL: {_one_line(e)}"
        else:
            what = f"rendering failed ({type(e).__name__}: {_one_line(e)})"
        print(
            f"warning: no video of the run, {what}. The run is complete; {later} "
            "(--no-render skips this step)",
            file=stream,
            flush=True,
        )
        return None
    (ep, *_) = result["episodes"]
    paths = result["paths"]
    print(
        f"render: policy return {ep['policy_return']:.2f}, expert {ep['expert_return']:.2f} "
        f"from the same start; wrote {paths['side_by_side']}, {paths['filmstrip']} (and the "
        f"policy/expert videos, render.json beside them)",
        file=stream,
        flush=True,
    )
    return result


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


class NotRenderableError(ConfigError):
    """The run's task has no MuJoCo model to draw (a pure-JAX task, a Brax adapter)."""


def render_run(
    run_dir: pathlib.Path,
    out: pathlib.Path | None = None,
    *,
    episodes: int = 1,
    seed: int = 1,
    gif: bool = False,
    width: int = 320,
    height: int = 240,
    frames: int = 8,
    camera: str | None = None,
    fps: float | None = None,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """What ``apexjax render RUN_DIR`` does, from Python: the run's last checkpoint, its
    policy alone and its expert from the same start state(s), rendered and written to
    ``out`` (default ``RUN_DIR/render``: ``policy``, ``expert`` and ``side_by_side`` videos,
    ``filmstrip.png``, ``render.json``). The run's task modules are imported first
    (:func:`apexjax.cli.import_run_modules`). One status line goes to ``stream`` (default
    stderr) before the episodes compile. Call :func:`prepare_gl` (or set ``MUJOCO_GL``)
    before MuJoCo is first imported.

    Returns:
      the ``render.json`` dict (returns and success per episode, paths, size, fps).

    Raises:
      NotRenderableError: the task is no MuJoCo task.
      apexjax.render.RenderError: no OpenGL context (before any episode runs).
      ConfigError: a bad option, no run or no readable checkpoint there.
    """
    for name, v in (("episodes", episodes), ("width", width), ("height", height)):
        _positive(name, v)
    _positive("frames", frames)
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps: must be > 0, got {fps}")
    run_dir = pathlib.Path(run_dir)
    stream = sys.stderr if stream is None else stream

    import jax
    import numpy as np

    from apexjax import render
    from apexjax.cli import import_run_modules
    from apexjax.loop import build_task
    from apexjax.train import load_checkpoint

    import_run_modules(run_dir)  # the modules that register the run's task
    config, state = load_checkpoint(run_dir, 1)  # one device: a few episodes
    task = build_task(config)
    if getattr(task, "mj_model", None) is None:
        raise NotRenderableError(f"{run_dir}: task {config.task!r} is not a MuJoCo task to render")
    if camera is not None:
        names = [task.mj_model.camera(i).name for i in range(task.mj_model.ncam)]
        if camera not in names:
            raise ConfigError(f"--camera: {config.task} has no camera {camera!r}: {names}")
    render.check_gl(task)  # fail now, not after the episodes
    out = run_dir / "render" if out is None else pathlib.Path(out)
    fps = fps or 1.0 / task.dt
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    print(
        f"render {config.task} ({getattr(task, 'backend', 'mjx')} physics): {episodes} "
        f"episode(s) x {task.episode_length} steps of the policy and of the expert; compiling...",
        file=stream,
        flush=True,
    )
    ran = {
        "policy": render.policy_episodes(config, task, state.policy, keys),
        "expert": render.expert_episodes(config, task, state.policy, keys, state.guidance_weight),
    }
    videos = {
        name: [
            render.render_states(task, ep.states, width=width, height=height, camera=camera)
            for ep in eps
        ]
        for name, eps in ran.items()
    }
    ext = ".gif" if gif else ".mp4"
    paths = {}
    for name, clips in videos.items():
        paths[name] = render.write_video(out / f"{name}{ext}", np.concatenate(clips), fps)
    both = render.side_by_side([np.concatenate(videos["policy"]), np.concatenate(videos["expert"])])
    paths["side_by_side"] = render.write_video(out / f"side_by_side{ext}", both, fps)
    rows = [videos[name][e] for e in range(episodes) for name in ("policy", "expert")]
    paths["filmstrip"] = render.write_image(out / "filmstrip.png", render.filmstrip(rows, frames))
    result = {
        "run_dir": str(run_dir),
        "task": config.task,
        "backend": getattr(task, "backend", None),
        "has_success": bool(task.has_success),
        "iteration": int(state.iteration),
        "guidance_weight": float(state.guidance_weight),
        "seed": seed,
        "episodes": [
            {
                f"{name}_{field}": value
                for name in ("policy", "expert")
                for field, value in (
                    ("return", ran[name][e].episode_return),
                    ("success", ran[name][e].success),
                )
            }
            for e in range(episodes)
        ],
        "frames_per_episode": task.episode_length + 1,
        "fps": fps,
        "width": width,
        "height": height,
        "camera": camera,
        "filmstrip_rows": [f"{name} {e}" for e in range(episodes) for name in ("policy", "expert")],
        "paths": {k: str(v) for k, v in paths.items()},
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }
    (out / "render.json").write_text(json.dumps(result, indent=2))
    return result


def episode_lines(result: dict[str, Any]) -> list[str]:
    """One line per filmed episode of a :func:`render_run` result: the returns (and
    success, for a task that has it) of the policy and of the expert."""
    lines = []
    for e, r in enumerate(result["episodes"]):
        line = (
            f"episode {e}: policy return {r['policy_return']:.2f}, expert {r['expert_return']:.2f}"
        )
        if result.get("has_success"):
            line += f"; success policy {r['policy_success']}, expert {r['expert_success']}"
        lines.append(line)
    return lines


def run(args: argparse.Namespace) -> int:
    for name in ("episodes", "width", "height", "frames"):
        _positive(name, getattr(args, name))
    if args.fps is not None and not args.fps > 0:
        raise ConfigError(f"--fps: must be > 0, got {args.fps}")
    prepare_gl()
    result = render_run(
        args.run_dir,
        args.out,
        episodes=args.episodes,
        seed=args.seed,
        gif=args.gif,
        width=args.width,
        height=args.height,
        frames=args.frames,
        camera=args.camera,
        fps=args.fps,
    )
    for line in episode_lines(result):
        print(line)
    out = pathlib.Path(result["paths"]["filmstrip"]).parent
    print(f"wrote {', '.join(result['paths'].values())}, {out / 'render.json'}")
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

"""Rendering (apexjax.render, `apexjax render`, `apexjax plan --video`) on cart-pole at 64x48.

Frames must show the model (not blank) and its motion; the files must read back. Where this
machine cannot create an offscreen OpenGL context the tests skip, but only on
:class:`RenderError` (the library's own clear error): any other failure fails.
"""

import inspect
import io
import json
import os

import imageio.v2 as iio
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import apexjax.cli
import apexjax.commands.render
from apexjax import envs, render
from apexjax.commands.render import choose_gl, choose_gl_for_training
from apexjax.configs import ConfigError

W, H, T = 64, 48, 30
# reading an MP4 back starts ffmpeg (a fork that execs at once: JAX's warning does not apply)
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


@pytest.fixture(autouse=True)
def _offscreen_gl(monkeypatch):
    """MuJoCo reads MUJOCO_GL when it is first imported, here at collection (by this or an
    earlier test module), where the command line would have set egl. Headless with
    MUJOCO_GL unset, point MuJoCo's renderer at EGL as MUJOCO_GL=egl at import would have."""
    gl_context = inspect.getmodule(mujoco.Renderer).gl_context
    current = getattr(gl_context, "GLContext", None)
    if os.environ.get("MUJOCO_GL") or os.environ.get("DISPLAY"):
        return
    if getattr(current, "__module__", "") != "mujoco.glfw":
        return
    monkeypatch.setenv("PYOPENGL_PLATFORM", os.environ.get("PYOPENGL_PLATFORM", "egl"))
    try:
        from mujoco.egl import GLContext
    except Exception:  # no EGL: rendering raises RenderError, the tests skip
        return
    monkeypatch.setattr(gl_context, "GLContext", GLContext)


@pytest.fixture
def gl():
    try:
        render.check_gl()
    except render.RenderError as e:
        pytest.skip(f"no offscreen OpenGL context on this machine: {e}")


@pytest.fixture(scope="module")
def swing():
    """Cart-pole pushed right for T steps: the cart runs, the pole swings."""
    task = envs.make("cartpole_swingup", backend="native")
    s0 = jax.jit(task.reset)(jax.random.key(0))
    states = render.replay(task, s0, jnp.ones((T, 1)))
    return task, states


def test_frames_show_the_model_and_its_motion(gl, swing):
    task, states = swing
    frames = render.render_states(task, states, width=W, height=H)
    assert frames.shape == (T + 1, H, W, 3) and frames.dtype == np.uint8
    assert min(float(f.std()) for f in frames) > 3.0  # the model is drawn: not blank
    moved = np.abs(frames[-1].astype(int) - frames[0]).mean()
    assert moved > 1.0  # the cart and the pole moved
    assert np.abs(frames[1].astype(int) - frames[0]).mean() < moved
    # the same frames from plain qpos/qvel arrays, through the renderer itself
    with render.FrameRenderer(task, width=W, height=H) as r:
        again = np.stack(
            [r.render(q, v) for q, v in zip(states.data.qpos, states.data.qvel, strict=True)]
        )
    np.testing.assert_array_equal(again, frames)
    # a diverged state is drawn black, the rest unchanged
    traj = render.trajectory(task, states)
    qpos = traj.qpos.copy()
    qpos[3] = np.nan
    bad = render.render_states(
        task, render.Trajectory(qpos=qpos, qvel=traj.qvel), width=W, height=H
    )
    assert not bad[3].any()
    np.testing.assert_array_equal(bad[4], frames[4])


def test_mjx_states_render_as_native_ones(gl):
    qpos = jnp.array([[0.0, np.pi], [0.5, 2.0], [-1.0, 0.3]])
    frames = []
    for backend in ("native", "mjx"):
        task = envs.make("cartpole_swingup", backend=backend)
        data = jax.jit(jax.vmap(task.make_data))(qpos, jnp.zeros_like(qpos))
        states = envs.base.State(data=data, t=jnp.arange(3))
        frames.append(render.render_states(task, states, width=W, height=H))
    np.testing.assert_array_equal(frames[0], frames[1])


def test_videos_and_filmstrip_read_back(gl, swing, tmp_path):
    task, states = swing
    frames = render.render_states(task, states, width=W, height=H)
    mp4 = render.write_video(tmp_path / "a.mp4", frames, fps=1 / task.dt)
    back = np.stack(iio.mimread(mp4, format="FFMPEG"))
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 6  # lossy, but the same pictures
    gif = render.write_video(tmp_path / "a.gif", frames, fps=20)
    assert len(iio.mimread(gif)) == T + 1
    odd = render.write_video(tmp_path / "odd.mp4", frames[:, :47, :63], fps=20)
    assert np.stack(iio.mimread(odd, format="FFMPEG")).shape[1:3] == (48, 64)  # padded even

    both = render.side_by_side([frames, frames[:10]], gap=4)
    assert both.shape == (T + 1, H, 2 * W + 4, 3)
    np.testing.assert_array_equal(both[-1, :, W + 4 :], frames[9])  # the short one holds

    strip = render.filmstrip([frames, frames[::-1]], k=4, gap=2)
    assert strip.shape == (2 * H + 2, 4 * W + 3 * 2, 3)
    np.testing.assert_array_equal(strip[:H, :W], frames[0])
    np.testing.assert_array_equal(strip[:H, -W:], frames[-1])
    np.testing.assert_array_equal(strip[H + 2 :, :W], frames[-1])
    png = render.write_image(tmp_path / "strip.png", strip)
    np.testing.assert_array_equal(iio.imread(png), strip)

    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        render.write_video(tmp_path / "a.avi", frames, fps=20)
    with pytest.raises(render.RenderError, match="no camera 'top'"):
        render.render_states(task, states, width=W, height=H, camera="top")


@pytest.mark.parametrize(
    "gl_name, install", [("egl", "apt-get install libegl1 libgl1"), ("osmesa", "libosmesa6")]
)
def test_missing_gl_is_one_clear_error(monkeypatch, gl_name, install):
    def no_gl(*args, **kwargs):
        raise ImportError("libEGL.so.1: cannot open shared object file: No such file")

    monkeypatch.setenv("MUJOCO_GL", gl_name)
    monkeypatch.setattr(mujoco, "Renderer", no_gl)
    with pytest.raises(render.RenderError, match=install) as e:
        render.check_gl()
    assert isinstance(e.value, ConfigError)  # the command line prints it as one message
    assert f"MUJOCO_GL={gl_name}" in str(e.value) and "cannot open shared object" in str(e.value)
    monkeypatch.delattr(mujoco, "Renderer")  # mujoco could not import its renderer at all
    with pytest.raises(render.RenderError, match=install):
        render.check_gl()


def test_command_line_picks_a_headless_gl_platform():
    libs = {"EGL": "libEGL.so.1", "OSMesa": "libOSMesa.so.8"}
    env = {}
    assert choose_gl(env, libs.get) == "egl" and env == {"MUJOCO_GL": "egl"}
    env = {}
    assert choose_gl(env, {"OSMesa": "libOSMesa.so.8"}.get) == "osmesa"
    env = {}
    assert choose_gl(env, {}.get) == "egl"  # neither: the render error names what to install
    env = {"MUJOCO_GL": "osmesa"}
    assert choose_gl(env, libs.get) == "osmesa"  # the user's choice stays
    env = {"DISPLAY": ":0"}
    assert choose_gl(env, libs.get) is None and "MUJOCO_GL" not in env  # MuJoCo's default


def test_train_sets_a_gl_platform_only_where_its_library_is_there():
    libs = {"EGL": "libEGL.so.1", "OSMesa": "libOSMesa.so.8"}
    env = {}
    assert choose_gl_for_training(env, libs.get) == "egl" and env == {"MUJOCO_GL": "egl"}
    env = {}
    assert choose_gl_for_training(env, {"OSMesa": "libOSMesa.so.8"}.get) == "osmesa"
    env = {}  # neither: importing MuJoCo must not fail; the end-of-train render warns
    assert choose_gl_for_training(env, {}.get) is None and env == {}
    env = {"MUJOCO_GL": "osmesa"}
    assert choose_gl_for_training(env, {}.get) == "osmesa"  # the user's choice stays
    env = {"DISPLAY": ":0"}
    assert choose_gl_for_training(env, libs.get) is None and "MUJOCO_GL" not in env


def test_render_command_on_a_trained_run(gl, tiny_cartpole_run, tmp_path, capsys):
    run = tiny_cartpole_run
    out = tmp_path / "video"
    argv = ["render", str(run), "--out", str(out), "--width", str(W), "--height", str(H)]
    assert apexjax.cli.main([*argv, "--frames", "4"]) == 0
    result = json.loads((out / "render.json").read_text())
    assert result["task"] == "cartpole_swingup" and result["frames_per_episode"] == 21
    (ep,) = result["episodes"]
    assert np.isfinite(ep["policy_return"]) and np.isfinite(ep["expert_return"])
    assert isinstance(ep["policy_success"], bool) and isinstance(ep["expert_success"], bool)
    for name, width in (("policy", W), ("expert", W), ("side_by_side", 2 * W + 4)):
        video = np.stack(iio.mimread(out / f"{name}.mp4", format="FFMPEG"))
        assert video.shape == (21, H, width, 3), name
        assert result["paths"][name] == str(out / f"{name}.mp4")
    strip = iio.imread(out / "filmstrip.png")
    assert strip.shape == (2 * H + 4, 4 * W + 3 * 4, 3)
    # policy and expert start from the same state: the first frames of both rows agree
    np.testing.assert_array_equal(strip[:H, :W], strip[H + 4 :, :W])
    assert "policy return" in capsys.readouterr().out

    # a bad option is one message before anything runs; so is a missing camera
    assert apexjax.cli.main(["render", str(run), "--frames", "0"]) == 2
    assert "--frames: must be >= 1" in capsys.readouterr().err
    assert apexjax.cli.main(["render", str(run), "--camera", "top"]) == 2
    assert "no camera 'top'" in capsys.readouterr().err


def test_plan_video(gl, tmp_path, capsys):
    path = tmp_path / "plan.gif"
    argv = ["plan", "--episodes", "1", "--steps", "10"]
    for item in ("population=8", "elites=2", "horizon=5", "iterations=2"):
        argv += ["--set", item]
    assert apexjax.cli.main([*argv, "--video", str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err  # the replay reproduced the episode's costs
    frames = iio.mimread(path)
    assert len(frames) == 11 and frames[0].shape == (240, 320, 3)
    assert apexjax.cli.main([*argv, "--video", str(tmp_path / "plan.avi")]) == 2
    assert "must end in .mp4 or .gif" in capsys.readouterr().err


def test_train_films_the_finished_run_unless_told_not_to(gl, tmp_path, monkeypatch, capsys):
    """``apexjax train`` ends with the render command's files at TRAIN_RENDER's size; a
    machine without offscreen OpenGL (or any render failure) gets one warning line and
    the run still succeeds."""
    from apexjax.commands.render import TRAIN_RENDER, NotRenderableError, render_after_training

    run = tmp_path / "run"
    argv = ["train", "--task", "cartpole_swingup", "--preset", "smoke", "--run-dir", str(run)]
    assert apexjax.cli.main(argv) == 0
    err = capsys.readouterr().err
    out = run / "render"
    result = json.loads((out / "render.json").read_text())
    w, h = TRAIN_RENDER["width"], TRAIN_RENDER["height"]
    assert (result["width"], result["height"], result["iteration"]) == (w, h, 1)
    video = np.stack(iio.mimread(out / "side_by_side.mp4", format="FFMPEG"))
    assert video.shape == (21, h, 2 * w + 4, 3)  # smoke: 20-step episodes
    strip = iio.imread(out / "filmstrip.png")
    assert strip.shape == (2 * h + 4, 8 * w + 7 * 4, 3)
    assert {"policy", "expert"} <= set(result["paths"])
    assert f"wrote {out / 'side_by_side.mp4'}" in err

    def no_gl(*args, **kwargs):
        raise render.RenderError("cannot create an OpenGL context (test)")

    resume = ["train", "--run-dir", str(run), "--resume"]  # nothing left to train
    with monkeypatch.context() as m:  # (the context keeps _offscreen_gl's patch)
        m.setattr(render, "check_gl", no_gl)
        assert apexjax.cli.main(resume) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "warning: no video" in x]
    assert "no offscreen OpenGL" in line and f"`apexjax render {run}`" in line
    assert json.loads((out / "render.json").read_text())["iteration"] == 1  # left as it was

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    stream = io.StringIO()
    with monkeypatch.context() as m:
        m.setattr(render, "policy_episodes", broken)
        assert render_after_training(run, stream=stream) is None
    (line,) = stream.getvalue().splitlines()[1:]  # after the "compiling..." line
    assert "rendering failed (RuntimeError: boom second line)" in line

    def not_mujoco(*args, **kwargs):
        raise NotRenderableError("task 'point_mass' is not a MuJoCo task to render")

    stream = io.StringIO()
    with monkeypatch.context() as m:
        m.setattr(apexjax.commands.render, "render_run", not_mujoco)
        assert render_after_training(run, stream=stream) is None
    assert stream.getvalue().startswith("render: skipped (task 'point_mass'")


def test_render_imports_the_runs_task_modules(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "my_swing"}))
    (run / "metadata.json").write_text(json.dumps({"task_modules": ["no_such_task_mod"]}))
    assert apexjax.cli.main(["render", str(run)]) == 2
    err = capsys.readouterr().err
    assert "'no_such_task_mod'" in err and "metadata.json" in err, err

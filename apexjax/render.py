"""Videos of a controller: MuJoCo tasks rendered offscreen, written as MP4, GIF or PNG.

A trajectory (a :class:`~apexjax.envs.base.State` with a leading time axis, as
:func:`replay` or a task's rollout returns it, or plain ``qpos``/``qvel`` arrays) is drawn
frame by frame with ``mujoco.Renderer``: each state's ``qpos``, ``qvel`` and mocap poses
(and the episode's model fields, e.g. the door's position) are put into an ``MjData`` of
the task's MjModel, ``mj_forward`` computes the kinematics, and the scene is rendered
from the task's camera (:data:`TASK_CAMERAS`, else a free camera on the model's centre).
Both physics backends work: the state's data is a
:class:`~apexjax.envs.native.NativeData` or an ``mjx.Data``; either has the fields read.

The OpenGL platform is MuJoCo's choice, made from ``MUJOCO_GL`` when ``mujoco`` is first
imported; this module sets nothing global. Headless, the caller sets ``MUJOCO_GL=egl`` (or
``osmesa``) before importing ``mujoco`` (the ``apexjax`` command line does). Where no GL
context can be created, :class:`RenderError` names the missing system library and its
install command.

:func:`policy_episodes` and :func:`expert_episodes` run episodes of a trained run's
policy alone and of the guided planner (the training expert, with the run's guidance
weight) from the same start states, and return their states for rendering.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import pathlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

from apexjax.configs import ConfigError

if TYPE_CHECKING:
    import jax

    from apexjax.envs.base import State, Task
    from apexjax.loop import TrainConfig
    from apexjax.policy import PolicyState

__all__ = [
    "TASK_CAMERAS",
    "Camera",
    "Episode",
    "FrameRenderer",
    "RenderError",
    "Trajectory",
    "check_gl",
    "default_camera",
    "expert_episodes",
    "filmstrip",
    "policy_episodes",
    "render_states",
    "replay",
    "side_by_side",
    "trajectory",
    "write_image",
    "write_video",
]

log = logging.getLogger(__name__)


class RenderError(ConfigError):
    """No offscreen OpenGL context (a missing system library, or no display for GLFW),
    or a bad rendering option. A :class:`~apexjax.configs.ConfigError`, so the command line
    reports it as one message."""


# what each MUJOCO_GL platform needs on a Debian/Ubuntu system
_GL_NEEDS = {
    "egl": ("libEGL (EGL, headless, GPU or Mesa)", "apt-get install libegl1 libgl1"),
    "osmesa": ("libOSMesa (OSMesa, software rendering)", "apt-get install libosmesa6"),
}


def _gl_hint(error: BaseException | None) -> str:
    gl = os.environ.get("MUJOCO_GL", "").strip().lower()
    cause = f": {type(error).__name__}: {error}" if error is not None else ""
    if gl in _GL_NEEDS:
        lib, cmd = _GL_NEEDS[gl]
        what = f"MUJOCO_GL={gl} needs {lib}; install it with `{cmd}`"
    else:
        what = (
            f"MUJOCO_GL={gl or '(unset)'} renders through GLFW, which needs a display; "
            "headless, set MUJOCO_GL=egl (`apt-get install libegl1 libgl1`) or "
            "MUJOCO_GL=osmesa (`apt-get install libosmesa6`)"
        )
    return (
        f"cannot create an OpenGL context for offscreen rendering{cause}. {what}. "
        "MUJOCO_GL is read when mujoco is first imported: set it before (the apexjax command "
        "line picks egl or osmesa itself when there is no display)"
    )


# ------------------------------------------------------------------------------ camera
@dataclasses.dataclass(frozen=True)
class Camera:
    """Where the renderer looks from.

    Attributes:
      name: a camera of the model (the others fields are then ignored).
      track: a body the free camera follows (a tracking camera on it), else a fixed point.
      lookat, distance, azimuth, elevation: the free camera (MuJoCo's conventions: metres
        and degrees); ``None`` keeps MuJoCo's default free camera for the model (its
        centre, 1.5 x its extent, azimuth 90, elevation -45).
      fit: ``(half width, half height)`` in metres around ``lookat`` that the free camera
        keeps in view: its distance follows from the frame's aspect ratio and the model's
        field of view (for a camera looking about level; replaces ``distance``).
      headlight: ``(ambient, diffuse)`` of the headlight (grey levels in [0, 1]) for a
        model with little light of its own; ``None`` keeps the model's.
    """

    name: str | None = None
    track: str | None = None
    lookat: tuple[float, float, float] | None = None
    distance: float | None = None
    azimuth: float | None = None
    elevation: float | None = None
    fit: tuple[float, float] | None = None
    headlight: tuple[float, float] | None = None


#: the default camera of each shipped MuJoCo task (other tasks: MuJoCo's free camera).
TASK_CAMERAS: dict[str, Camera] = {
    "pendulum_swingup": Camera(
        lookat=(0.0, 0.0, 0.6), distance=2.6, azimuth=90, elevation=-5, headlight=(0.5, 0.7)
    ),
    "cartpole_swingup": Camera(
        lookat=(0.0, 0.0, 1.1), fit=(3.0, 1.4), azimuth=90, elevation=-5, headlight=(0.5, 0.7)
    ),
    "reacher": Camera(lookat=(0.0, 0.0, 0.0), distance=0.85, azimuth=90, elevation=-90),
    "halfcheetah_running": Camera(name="track"),
    "humanoid_standup": Camera(name="track"),
    "door": Camera(lookat=(0.0, -0.1, 0.2), distance=1.4, azimuth=135, elevation=-25),
    "fetch_pick_and_place": Camera(
        lookat=(1.3, 0.75, 0.5), distance=1.6, azimuth=150, elevation=-25
    ),
}


def default_camera(task_name: str) -> Camera:
    """The camera a task is rendered from by default (:data:`TASK_CAMERAS`, else MuJoCo's
    free camera on the model)."""
    return TASK_CAMERAS.get(task_name, Camera())


def _mjv_camera(
    model: mujoco.MjModel, camera: Camera, aspect: float = 4 / 3
) -> mujoco.MjvCamera | int:
    if camera.name is not None:
        cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera.name)
        if cid < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise RenderError(
                f"camera: the model has no camera {camera.name!r}; it has {names or 'none'}"
            )
        return cid
    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, cam)
    if camera.track is not None:
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, camera.track)
        if bid < 0:
            raise RenderError(f"camera.track: the model has no body {camera.track!r}")
        cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        cam.trackbodyid = bid
    if camera.lookat is not None:
        cam.lookat[:] = camera.lookat
    for field in ("distance", "azimuth", "elevation"):
        value = getattr(camera, field)
        if value is not None:
            setattr(cam, field, float(value))
    if camera.fit is not None:
        tan = np.tan(np.deg2rad(float(model.vis.global_.fovy)) / 2)
        cam.distance = max(camera.fit[0] / (tan * aspect), camera.fit[1] / tan)
    return cam


# -------------------------------------------------------------------------- trajectory
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """What a rendered trajectory needs, as NumPy arrays over time ``T``.

    Attributes:
      qpos: ``[T, nq]``; qvel: ``[T, nv]`` or None (zeros).
      mocap_pos: ``[T, nmocap, 3]`` or None (the model's); mocap_quat: ``[T, nmocap, 4]``
        or None.
      model_fields: model fields of the episode (e.g. ``body_pos`` with the door's
        position), whole arrays, constant over the trajectory.
    """

    qpos: np.ndarray
    qvel: np.ndarray | None = None
    mocap_pos: np.ndarray | None = None
    mocap_quat: np.ndarray | None = None
    model_fields: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.qpos.shape[0])


def trajectory(task: Task, states: State) -> Trajectory:
    """The :class:`Trajectory` of ``states``, a State of a MuJoCo task with a leading time
    axis (one episode: index a batch of episodes first), on either backend."""
    d = states.data
    qpos = np.asarray(d.qpos)
    if qpos.ndim != 2:
        raise ValueError(
            f"render: states must have one leading time axis (qpos [T, nq]), got qpos "
            f"{qpos.shape}; index the episode of a batch first"
        )
    mocap_pos = getattr(d, "mocap_pos", None)
    mocap_quat = getattr(d, "mocap_quat", None)
    fields: dict[str, np.ndarray] = {}
    model_fields = getattr(task, "model_fields", None)
    if getattr(task, "model_field_names", ()) and model_fields is not None:
        import jax

        info0 = jax.tree.map(lambda x: x[0], states.info)  # constant over an episode
        fields = {k: np.asarray(v) for k, v in model_fields(info0).items()}
    return Trajectory(
        qpos=qpos,
        qvel=np.asarray(d.qvel),
        mocap_pos=None if mocap_pos is None or not np.size(mocap_pos) else np.asarray(mocap_pos),
        mocap_quat=None
        if mocap_quat is None or not np.size(mocap_quat)
        else np.asarray(mocap_quat),
        model_fields=fields,
    )


def _mj_model(task_or_model: Task | mujoco.MjModel) -> mujoco.MjModel:
    if isinstance(task_or_model, mujoco.MjModel):
        return task_or_model
    model = getattr(task_or_model, "mj_model", None)
    if not isinstance(model, mujoco.MjModel):
        raise RenderError(
            f"render: {task_or_model!r} has no MuJoCo model (mj_model) to render; only "
            "MuJoCo tasks (apexjax.envs.MujocoTask) can be rendered"
        )
    return model


def _make_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    renderer_cls = getattr(mujoco, "Renderer", None)
    if renderer_cls is None:  # mujoco could not import its rendering module
        raise RenderError(_gl_hint(None))
    try:
        return renderer_cls(model, height=height, width=width)
    except Exception as e:  # FatalError, ImportError, RuntimeError ...: all of them GL
        raise RenderError(_gl_hint(e)) from e


def check_gl(task_or_model: Task | mujoco.MjModel | None = None) -> None:
    """Creates (and closes) a tiny offscreen renderer: :class:`RenderError` now, before any
    long computation, where rendering would fail later."""
    model = (
        mujoco.MjModel.from_xml_string("<mujoco/>")
        if task_or_model is None
        else _mj_model(task_or_model)
    )
    _make_renderer(model, 8, 8).close()


class FrameRenderer:
    """An offscreen renderer for one model (and one episode's model fields).

    A context manager; :meth:`close` frees the GL context. Not thread-safe: render from
    the thread that created it.
    """

    def __init__(
        self,
        task_or_model: Task | mujoco.MjModel,
        *,
        width: int = 320,
        height: int = 240,
        camera: Camera | str | None = None,
        model_fields: Mapping[str, Any] | None = None,
    ):
        """
        Args:
          task_or_model: a MuJoCo task (its ``mj_model``) or an ``MjModel``.
          width, height: pixels of a frame.
          camera: a :class:`Camera`, a camera name of the model, or None for the task's
            default (:func:`default_camera`).
          model_fields: per-episode model fields (:meth:`MujocoTask.model_fields`).

        Raises:
          RenderError: a bad size or camera, or no OpenGL context.
        """
        for name, v in (("width", width), ("height", height)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise RenderError(f"render: {name} must be an int >= 1, got {v!r}")
        base = _mj_model(task_or_model)
        model = copy.copy(base)  # the copy takes the episode's fields and a larger buffer
        for key, value in (model_fields or {}).items():
            getattr(model, key)[...] = np.asarray(value)
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), int(width))
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), int(height))
        if camera is None:
            camera = (
                Camera()
                if isinstance(task_or_model, mujoco.MjModel)
                else default_camera(task_or_model.name)
            )
        elif isinstance(camera, str):
            camera = Camera(name=camera)
        if camera.name is None and camera.headlight is not None:
            model.vis.headlight.ambient[:] = camera.headlight[0]
            model.vis.headlight.diffuse[:] = camera.headlight[1]
        self.model = model
        self.width, self.height = int(width), int(height)
        self.camera = _mjv_camera(model, camera, self.width / self.height)
        self._data = mujoco.MjData(model)
        self._renderer = _make_renderer(model, self.width, self.height)
        self._blank = np.zeros((self.height, self.width, 3), np.uint8)

    def render(
        self,
        qpos: Any,
        qvel: Any | None = None,
        mocap_pos: Any | None = None,
        mocap_quat: Any | None = None,
    ) -> np.ndarray:
        """One frame ``[height, width, 3]`` uint8 of the state; black where the state is
        not finite (a diverged simulation)."""
        d = self._data
        qpos = np.asarray(qpos, np.float64)
        if qpos.shape != (self.model.nq,):
            raise ValueError(f"render: qpos must have shape ({self.model.nq},), got {qpos.shape}")
        if not np.all(np.isfinite(qpos)):
            return self._blank.copy()
        d.qpos[:] = qpos
        d.qvel[:] = 0.0 if qvel is None else np.nan_to_num(np.asarray(qvel, np.float64))
        if self.model.nmocap:
            if mocap_pos is not None:
                d.mocap_pos[:] = np.asarray(mocap_pos, np.float64)
            if mocap_quat is not None:
                d.mocap_quat[:] = np.asarray(mocap_quat, np.float64)
        mujoco.mj_forward(self.model, d)
        self._renderer.update_scene(d, camera=self.camera)
        return self._renderer.render().copy()

    def render_trajectory(self, traj: Trajectory) -> np.ndarray:
        """Every state of ``traj``: frames ``[T, height, width, 3]`` uint8."""
        frames = np.empty((len(traj), self.height, self.width, 3), np.uint8)
        blank = 0
        for t in range(len(traj)):
            frames[t] = self.render(
                traj.qpos[t],
                None if traj.qvel is None else traj.qvel[t],
                None if traj.mocap_pos is None else traj.mocap_pos[t],
                None if traj.mocap_quat is None else traj.mocap_quat[t],
            )
            blank += not np.all(np.isfinite(traj.qpos[t]))
        if blank:
            log.warning("render: %d of %d states are not finite (drawn black)", blank, len(traj))
        return frames

    def close(self) -> None:
        """Frees the GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> FrameRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def render_states(
    task: Task,
    states: State | Trajectory,
    *,
    width: int = 320,
    height: int = 240,
    camera: Camera | str | None = None,
) -> np.ndarray:
    """Frames ``[T, height, width, 3]`` uint8 of one episode's states (a State with a
    leading time axis, on either backend, or a :class:`Trajectory`) of a MuJoCo ``task``.

    Raises:
      RenderError: no OpenGL context, a bad size or camera, or not a MuJoCo task.
    """
    traj = states if isinstance(states, Trajectory) else trajectory(task, states)
    with FrameRenderer(
        task, width=width, height=height, camera=camera, model_fields=traj.model_fields
    ) as r:
        return r.render_trajectory(traj)


# ----------------------------------------------------------------------------- episodes
def _replay(task: Task, state0: State, actions: jax.Array) -> State:
    import jax
    import jax.numpy as jnp

    def step(s: State, a: jax.Array) -> tuple[State, State]:
        s2 = task.step(s, a)
        return s2, s2

    _, states = jax.lax.scan(step, state0, actions)
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), state0, states)


@functools.lru_cache(maxsize=8)
def _jitted_replay(task: Task) -> Callable[[State, jax.Array], State]:
    import jax

    return jax.jit(lambda s0, actions: _replay(task, s0, actions))


def replay(task: Task, state0: State, actions: Any) -> State:
    """The states of applying ``actions`` ``[T, A]`` from ``state0`` with ``task.step``:
    a State with a leading axis ``T + 1``, ``state0`` first. The physics is deterministic
    (natively bit-identical), so replaying an episode's executed actions from its start
    state gives its trajectory."""
    import jax.numpy as jnp

    return _jitted_replay(task)(state0, jnp.asarray(actions, jnp.float32))


@dataclasses.dataclass(frozen=True)
class Episode:
    """One episode, for rendering.

    Attributes:
      states: a State with leading axis ``T + 1`` (the start state first).
      actions: ``[T, A]`` executed actions; costs: ``[T]`` task costs.
      success: at the last state; None where the task defines none.
    """

    states: Any
    actions: np.ndarray
    costs: np.ndarray
    success: bool | None

    @property
    def episode_return(self) -> float:
        """``-sum(costs)``, as the training loop reports returns."""
        return float(-np.sum(self.costs))


def _reset_key(key: jax.Array) -> jax.Array:
    import jax

    # as the training loop's episodes do: split the episode key, reset with the first half
    return jax.random.split(key)[0]


def _episodes(task: Task, run: Callable[..., Any], *args: Any) -> list[Episode]:
    """``run(*args) -> (start states, actions, costs, success)`` over a batch of episodes,
    jitted with the replay of the actions; one :class:`Episode` each."""
    import jax

    def with_states(*a: Any) -> tuple[Any, ...]:
        s0, actions, costs, success = run(*a)
        return jax.vmap(lambda s, u: _replay(task, s, u))(s0, actions), actions, costs, success

    states, actions, costs, success = jax.device_get(jax.jit(with_states)(*args))
    return [
        Episode(
            states=jax.tree.map(lambda x, i=i: x[i], states),
            actions=np.asarray(actions[i]),
            costs=np.asarray(costs[i]),
            success=bool(success[i]) if task.has_success else None,
        )
        for i in range(len(costs))
    ]


def policy_episodes(
    config: TrainConfig, task: Task, policy_state: PolicyState, keys: jax.Array
) -> list[Episode]:
    """The policy alone (no planner), one episode per key of ``keys`` ``[N]``, each from the
    start state of its key (the same as :func:`expert_episodes` with the same keys), as
    the training loop evaluates the policy."""
    import jax

    from apexjax import policy
    from apexjax.planning.rollout import rollout_closed_loop

    def one(pol: PolicyState, k: jax.Array) -> tuple[Any, ...]:
        s0 = task.reset(_reset_key(k))
        actions, _, costs, final = rollout_closed_loop(
            task,
            s0,
            lambda s: policy.act(config.policy, pol, task.observation(s)),
            task.episode_length,
        )
        return s0, actions, costs, task.success(final)

    return _episodes(task, jax.vmap(one, in_axes=(None, 0)), policy_state, keys)


def expert_episodes(
    config: TrainConfig,
    task: Task,
    policy_state: PolicyState,
    keys: jax.Array,
    guidance_weight: jax.Array | float = 0.0,
) -> list[Episode]:
    """The guided planner, the training expert, one episode per key of ``keys`` ``[N]``:
    the very episode function of :mod:`apexjax.loop` (the policy's candidates in the
    population, the guidance cost), λ set as :func:`apexjax.loop.make_evaluate` sets it
    (``guidance_weight`` is a run's ``TrainState.guidance_weight`` in ``progress`` mode).
    The states are the replay of its executed actions."""
    import jax
    import jax.numpy as jnp

    from apexjax.episodes import episode_fns
    from apexjax.guidance import initial_weight

    # the training loop's own episode, not a copy of it: what is rendered is what trains
    episode = episode_fns(config, task).expert
    lam0 = initial_weight(config.guidance, guidance_weight, jnp.bool_(True))

    def one(pol: PolicyState, k: jax.Array, lam: jax.Array) -> tuple[Any, ...]:
        ep = episode(pol, k, False, lam, jnp.bool_(True))
        # the executed actions (with label="mean" the labels are the planner mean's)
        return task.reset(_reset_key(k)), ep.actions, ep.costs, ep.success

    return _episodes(task, jax.vmap(one, in_axes=(None, 0, None)), policy_state, keys, lam0)


# ------------------------------------------------------------------------------ writers
def _check_frames(frames: Any) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8 or not f.shape[0]:
        raise ValueError(
            f"frames must be a non-empty uint8 array [T, H, W, 3], got {f.dtype} {f.shape}"
        )
    return f


def side_by_side(videos: Sequence[Any], gap: int = 4) -> np.ndarray:
    """Videos ``[T_i, H, W_i, 3]`` next to each other, ``gap`` white pixels between: one
    video ``[max T_i, H, sum W_i + gaps, 3]`` (a shorter one holds its last frame)."""
    vs = [_check_frames(v) for v in videos]
    if not vs:
        raise ValueError("side_by_side: no videos")
    if len({v.shape[1] for v in vs}) != 1:
        raise ValueError(f"side_by_side: heights differ: {[v.shape[1] for v in vs]}")
    T, H = max(v.shape[0] for v in vs), vs[0].shape[1]
    parts = []
    for i, v in enumerate(vs):
        if i:
            parts.append(np.full((T, H, gap, 3), 255, np.uint8))
        if v.shape[0] < T:
            v = np.concatenate([v, np.repeat(v[-1:], T - v.shape[0], axis=0)])
        parts.append(v)
    return np.concatenate(parts, axis=2)


def filmstrip(rows: Sequence[Any], k: int = 8, gap: int = 4) -> np.ndarray:
    """An image of ``k`` frames evenly spaced in time (first and last included) side by
    side, one row per video of ``rows`` (e.g. policy, expert), ``gap`` white pixels
    between frames and rows: ``[H', W', 3]`` uint8."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"filmstrip: k must be an int >= 1, got {k!r}")
    vs = [_check_frames(v) for v in rows]
    if not vs:
        raise ValueError("filmstrip: no rows")
    if len({v.shape[1:] for v in vs}) != 1:
        raise ValueError(f"filmstrip: frame sizes differ: {[v.shape[1:3] for v in vs]}")
    H, W = vs[0].shape[1:3]
    out = np.full((len(vs) * (H + gap) - gap, k * (W + gap) - gap, 3), 255, np.uint8)
    for r, v in enumerate(vs):
        idx = np.round(np.linspace(0, v.shape[0] - 1, k)).astype(int)
        for c, t in enumerate(idx):
            out[r * (H + gap) : r * (H + gap) + H, c * (W + gap) : c * (W + gap) + W] = v[t]
    return out


def _even(frames: np.ndarray) -> np.ndarray:
    """Pads to even height and width (H.264 in yuv420p needs them)."""
    _, H, W, _ = frames.shape
    if H % 2 or W % 2:
        frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)))
    return frames


def write_video(path: str | os.PathLike[str], frames: Any, fps: float) -> pathlib.Path:
    """Writes ``frames`` ``[T, H, W, 3]`` uint8 at ``fps`` frames per second: an MP4 (H.264
    through imageio-ffmpeg) for ``.mp4``, an animated GIF (looping) for ``.gif``. Returns
    the path."""
    import imageio.v2 as iio
    import imageio.v3 as iio3

    frames = _check_frames(frames)
    if not fps > 0:
        raise ValueError(f"write_video: fps must be > 0, got {fps!r}")
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        iio3.imwrite(path, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    elif suffix == ".mp4":
        with warnings.catch_warnings():
            # the writer forks ffmpeg, which execs at once: JAX's fork warning does not apply
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            with iio.get_writer(
                path,
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                macro_block_size=1,
                ffmpeg_log_level="error",
            ) as w:
                for f in _even(frames):
                    w.append_data(f)
    else:
        raise ValueError(f"write_video: {str(path)!r}: the suffix must be .mp4 or .gif")
    return path


def write_image(path: str | os.PathLike[str], image: Any) -> pathlib.Path:
    """Writes an ``[H, W, 3]`` uint8 image (PNG for ``.png``); returns the path."""
    import imageio.v3 as iio3

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"write_image: expected uint8 [H, W, 3], got {img.dtype} {img.shape}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio3.imwrite(path, img)
    return path

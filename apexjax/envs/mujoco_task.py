"""Tasks over an MJCF model, with the physics behind ``Task.step`` chosen per task: a backend.

- ``"mjx"``: MuJoCo MJX, traced into the XLA program (the choice on GPU/TPU). The MJX model
  gets the task's :attr:`MujocoTask.mjx_options` (solver settings chosen for speed within
  the task's fidelity tolerance against native MuJoCo).
- ``"native"``: MuJoCo's C library, called from inside ``jax.jit`` through a host callback,
  one call per control step for the whole vmapped batch (:mod:`apexjax.envs.native`); the
  choice on CPU. Bit-identical to a plain ``mj_step`` loop; not differentiable.
- ``"auto"`` (the default): native when JAX's default backend is the CPU, MJX otherwise.

A task writes its cost, observation and success once, in JAX, reading ``state.data``:
``qpos``, ``qvel``, ``act``, ``ctrl``, ``mocap_pos``/``mocap_quat``, ``time``, and the derived
quantities it lists in :attr:`MujocoTask.derived_fields` (``xpos``, ``site_xpos``, ...).
On both backends those are evaluated at the state they belong to: after a step, at the new
state (MuJoCo's ``mj_step`` alone would leave them one physics substep stale).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from apexjax.configs import ConfigError, check_choice, check_int
from apexjax.envs.base import State, Task, TaskConfig
from apexjax.envs.native import DERIVED_FIELDS, NativeSim

if TYPE_CHECKING:
    from mujoco import mjx

__all__ = ["BACKENDS", "MujocoTask", "MujocoTaskConfig", "resolve_backend"]


def _mjx() -> Any:
    """``mujoco.mjx``, imported on first use: it takes seconds to import (it brings in
    MuJoCo Warp), and a task on the native backend never needs it."""
    from mujoco import mjx

    return mjx


#: the physics backends a MuJoCo task accepts.
BACKENDS = ("auto", "mjx", "native")
_MJX_OPTIONS = ("solver", "iterations", "ls_iterations", "tolerance", "ls_tolerance")


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"native"`` where JAX's default backend is the CPU, else ``"mjx"``;
    ``"mjx"`` and ``"native"`` unchanged.

    Raises:
      ConfigError: not one of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not allowed; choose one of {list(BACKENDS)}")
    if backend == "auto":
        return "native" if jax.default_backend() == "cpu" else "mjx"
    return backend


@dataclasses.dataclass(frozen=True)
class MujocoTaskConfig(TaskConfig):
    """Base of the configs of tasks over an MJCF model.

    Attributes:
      backend: physics behind ``Task.step``: "mjx", "native" or "auto" (native on CPU,
        MJX elsewhere).
      native_threads: MuJoCo threads per native host call; 0 picks the usable CPUs divided
        by this process's device count. Results do not depend on it.
    """

    backend: Literal["auto", "mjx", "native"] = "auto"
    native_threads: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        check_choice(f"{name}.backend", self.backend, BACKENDS)
        check_int(f"{name}.native_threads", self.native_threads, ge=0, hint="0 = automatic")


class MujocoTask(Task):
    """A task over an MJCF model on the backend its config asks for; subclasses add the
    reset, cost, observation and success.

    Class attributes a subclass may set:
      derived_fields: the derived MjData quantities it reads (keys of
        :data:`apexjax.envs.native.DERIVED_FIELDS`), computed at every state.
      model_field_names: model fields an episode sets in :meth:`model_fields` (e.g. a
        body position drawn at reset).
      mjx_options: MJX solver settings (``solver``, ``iterations``, ``ls_iterations``,
        ``tolerance``, ``ls_tolerance``) for this task's MJX model; native MuJoCo always
        runs the model as it is.

    On MJX the model is closed over (not passed as an argument) by every method, so jitted
    callers embed it as a constant, which is measurably cheaper per call.
    """

    derived_fields: ClassVar[tuple[str, ...]] = ()
    model_field_names: ClassVar[tuple[str, ...]] = ()
    mjx_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, name: str, mj_model: mujoco.MjModel, config: MujocoTaskConfig):
        self.name = name
        self.config = config
        self.mj_model = mj_model
        self.backend = resolve_backend(getattr(config, "backend", "auto"))
        self.episode_length = config.episode_length
        self.frame_skip = config.frame_skip
        self.dt = float(mj_model.opt.timestep) * config.frame_skip
        lo, hi = mj_model.actuator_ctrlrange.T
        limited = mj_model.actuator_ctrllimited.astype(bool)
        if not limited.all():
            raise ValueError(f"task {name!r}: every actuator must be ctrllimited")
        self.action_low = np.asarray(lo, np.float32)
        self.action_high = np.asarray(hi, np.float32)
        unknown = sorted(set(self.derived_fields) - set(DERIVED_FIELDS))
        if unknown:
            raise ValueError(f"task {name!r}: unsupported derived_fields {unknown}")
        if self.backend == "mjx":
            _ = self.mjx_model  # built now: a bad model fails here, not in a trace
        else:
            self.native = NativeSim(
                mj_model,
                config.frame_skip,
                self.derived_fields,
                self.model_field_names,
                getattr(config, "native_threads", 0),
            )

    # ------------------------------------------------------------------- models
    @functools.cached_property
    def mjx_model(self) -> mjx.Model:
        """The MJX model (with :attr:`mjx_options`), built on first use, on this process's
        own device: MJX's default, ``jax.devices()[0]``, belongs to process 0 in a
        multi-process run, and the model is closed over as a constant."""
        with jax.ensure_compile_time_eval():  # concrete arrays even if first used in a trace
            return _mjx().put_model(self.mjx_mj_model, device=jax.local_devices()[0])

    @functools.cached_property
    def mjx_mj_model(self) -> mujoco.MjModel:
        """The MuJoCo model MJX runs: the task's model with :attr:`mjx_options` applied."""
        m = copy.copy(self.mj_model)
        for key, value in self.mjx_options.items():
            if key not in _MJX_OPTIONS:
                raise ValueError(f"task {self.name!r}: unknown mjx_options key {key!r}")
            if key == "solver":
                value = getattr(mujoco.mjtSolver, f"mjSOL_{str(value).upper()}")
            setattr(m.opt, key, value)
        return m

    def model_fields(self, info: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-episode values of the model fields in :attr:`model_field_names` (whole
        arrays, float32), from ``info``; may hold tracers. Default: none."""
        del info
        return {}

    def _model_values(self, info: dict[str, jax.Array]) -> list[jax.Array]:
        fields = self.model_fields(info)
        if set(fields) != set(self.model_field_names):
            raise ValueError(
                f"task {self.name!r}: model_fields returned {sorted(fields)}, expected "
                f"{sorted(self.model_field_names)}"
            )
        return [jnp.asarray(fields[k], jnp.float32) for k in self.model_field_names]

    def model(self, info: dict[str, jax.Array]) -> mjx.Model:
        """The MJX model an episode is simulated with: the task's, with the episode's
        :meth:`model_fields` put in (traced)."""
        fields = self.model_fields(info)
        return self.mjx_model.replace(**fields) if fields else self.mjx_model

    # -------------------------------------------------------------------- state
    def make_data(
        self, qpos: jax.Array, qvel: jax.Array, info: dict[str, jax.Array] | None = None
    ) -> Any:
        """The physics state at ``qpos``/``qvel`` (everything else MuJoCo's default) with
        derived quantities computed, in the model of an episode with ``info``: an
        ``mjx.Data`` on MJX, a :class:`~apexjax.envs.native.NativeData` natively."""
        return self._forward(qpos, qvel, {} if info is None else info)

    @functools.cached_property
    def _forward(self):
        if self.backend == "native":

            def forward(qpos, qvel, info):
                return self.native.jax_forward(qpos, qvel, self._model_values(info))

        else:

            def forward(qpos, qvel, info):
                m = self.model(info)
                data = _mjx().make_data(self.mjx_model).replace(qpos=qpos, qvel=qvel)
                return _mjx().forward(m, data)

        return jax.jit(forward)

    def is_finite(self, state: State) -> jax.Array:
        """True iff qpos and qvel are finite. A diverged step corrupts both, so checking
        them alone is enough and avoids a reduction over every field of the data."""
        d = state.data
        return jnp.all(jnp.isfinite(d.qpos)) & jnp.all(jnp.isfinite(d.qvel))

    def apply_action(self, state: State, action: jax.Array) -> Any:
        """The data to simulate from after the (clipped) ``action``: by default the action
        is the actuators' ``ctrl``; tasks that act otherwise (a mocap target) override it."""
        return state.data.replace(ctrl=action.astype(state.data.ctrl.dtype))

    def _step(self, state: State, action: jax.Array) -> State:
        data = self._physics(self.apply_action(state, action), state.info)
        return state.replace(data=data, t=state.t + 1)

    @property
    def simulate_is_fused(self) -> bool:
        """Natively, with actions that are the controls: a whole open-loop sequence is one
        host call (a task that acts through a state-dependent :meth:`apply_action` steps
        one control step per call)."""
        return self.backend == "native" and type(self).apply_action is MujocoTask.apply_action

    def simulate(self, state: State, actions: jax.Array, resumable: bool = True) -> State:
        if not self.simulate_is_fused:
            return super().simulate(state, actions)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise ValueError(
                f"task {self.name!r}: actions must have shape (h, {self.action_dim}), got "
                f"{tuple(actions.shape)}"
            )
        actions = jnp.clip(actions, self.action_low, self.action_high)
        h = actions.shape[0]
        data = self._rollout(state.data, actions, state.info, resumable=bool(resumable))
        info = jax.tree.map(lambda x: jnp.broadcast_to(x, (h, *jnp.shape(x))), state.info)
        return State(data=data, t=state.t + jnp.arange(1, h + 1, dtype=state.t.dtype), info=info)

    @functools.cached_property
    def _rollout(self):
        def rollout(data, actions, info, resumable):
            return self.native.jax_rollout(data, actions, self._model_values(info), resumable)

        return jax.jit(rollout, static_argnames="resumable")

    @functools.cached_property
    def _physics(self):
        # One jitted function of the task: a program that steps the model in several
        # places (planner iterations, policy rollouts, resets) traces it once.
        if self.backend == "native":

            def physics(data, info):
                return self.native.jax_step(data, self._model_values(info))

            return jax.jit(physics)

        stages = {DERIVED_FIELDS[f] for f in self.derived_fields}

        def physics(data, info):
            m = self.model(info)
            d = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: _mjx().step(m, d), data)
            # mjx.step leaves positions one substep stale: recompute what the task reads
            if stages:
                d = _mjx().kinematics(m, d)
            if stages & {"com", "vel"}:
                d = _mjx().com_pos(m, d)
            if "vel" in stages:
                d = _mjx().com_vel(m, d)
            return d

        return jax.jit(physics)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} backend={self.backend!r}>"

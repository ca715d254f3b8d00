"""Task interface: pure reset/step/cost over an immutable :class:`State` pytree.

A task is a plain Python object (hashable by identity, so it can be closed over or
passed as a static argument to ``jax.jit``). Every method is a pure function of its
arguments and is jit- and vmap-able; copying a state is copying a pytree.

Two families implement it: :class:`MjxTask` (an MJCF model stepped with MuJoCo MJX,
the tasks shipped with apexjax) and the adapters in :mod:`apexjax.envs.adapters`
(Brax ``Env`` and MuJoCo Playground ``MjxEnv``).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from mujoco import mjx

from apexjax.configs import ConfigError

__all__ = ["State", "Task", "MjxTask", "TaskConfig", "tree_is_finite"]


@struct.dataclass
class State:
    """Environment state.

    Attributes:
      data: ``mjx.Data`` for MJX tasks; the wrapped environment's own state for adapters.
      t: int32 scalar, control steps taken since reset.
      info: task extras (e.g. a target position), a dict of arrays fixed at reset.
    """

    data: Any
    t: jax.Array
    info: dict[str, jax.Array] = struct.field(default_factory=dict)


def tree_is_finite(tree: Any) -> jax.Array:
    """True iff every floating-point leaf of ``tree`` is finite (bool scalar)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree_util.tree_leaves(tree)
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack(leaves))


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Base of the per-task frozen configs. Subclasses add fields with defaults.

    Attributes:
      episode_length: control steps per episode.
      frame_skip: physics steps per control step (control period = frame_skip * timestep).
    """

    episode_length: int = 1000
    frame_skip: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (
                isinstance(v, bool) or not isinstance(v, (int, np.integer))
            ):
                raise ConfigError(f"{type(self).__name__}.{f.name}: expected an int, got {v!r}")
            if f.type in ("float", float):
                if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                    raise ConfigError(
                        f"{type(self).__name__}.{f.name}: expected a float, got {v!r}"
                    )
                if not np.isfinite(v):
                    raise ConfigError(f"{type(self).__name__}.{f.name}: must be finite, got {v!r}")
        if self.episode_length < 1:
            raise ConfigError(
                f"{type(self).__name__}.episode_length: must be >= 1, got {self.episode_length}"
            )
        if self.frame_skip < 1:
            raise ConfigError(
                f"{type(self).__name__}.frame_skip: must be >= 1, got {self.frame_skip}"
            )


class Task(abc.ABC):
    """A control task: dynamics, planning cost, observation, success.

    Subclasses set ``name``, ``action_low``/``action_high`` (numpy ``[A]``),
    ``episode_length``, ``frame_skip`` and ``dt`` (seconds per control step), and
    implement the abstract methods. Costs are "lower is better".
    """

    name: str
    action_low: np.ndarray
    action_high: np.ndarray
    episode_length: int
    frame_skip: int
    dt: float
    #: whether :meth:`success` is meaningful for this task.
    has_success: ClassVar[bool] = False

    # ----------------------------------------------------------------- interface
    @abc.abstractmethod
    def reset(self, key: jax.Array) -> State:
        """Samples an initial state. ``key``: a PRNG key."""

    @abc.abstractmethod
    def _step(self, state: State, action: jax.Array) -> State:
        """Advances one control step; ``action`` is already validated and clipped."""

    @abc.abstractmethod
    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        """Per-step planning cost c(s, a, s'), a float scalar; lower is better."""

    @abc.abstractmethod
    def observation(self, state: State) -> jax.Array:
        """Policy observation ``[obs_dim]``."""

    def success(self, state: State) -> jax.Array:
        """Whether ``state`` counts as solved (bool scalar). False where undefined."""
        del state
        return jnp.asarray(False)

    def is_finite(self, state: State) -> jax.Array:
        """True iff every float in the state is finite (a diverged simulation is not)."""
        return tree_is_finite(state.data)

    # ------------------------------------------------------------------- derived
    @property
    def action_dim(self) -> int:
        return int(self.action_low.shape[0])

    @property
    def observation_dim(self) -> int:
        shape = jax.eval_shape(lambda k: self.observation(self.reset(k)), jax.random.key(0)).shape
        return int(shape[0])

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``, numpy ``[A]`` each."""
        return self.action_low, self.action_high

    def check_action(self, action: Any) -> jax.Array:
        """Validates shape and dtype at trace time; returns the action as an array."""
        shape = getattr(action, "shape", None)
        dtype = getattr(action, "dtype", None)
        if shape is None or dtype is None:
            action = jnp.asarray(action)
            shape, dtype = action.shape, action.dtype
        if tuple(shape) != (self.action_dim,):
            raise ValueError(
                f"task {self.name!r}: action must have shape ({self.action_dim},), got "
                f"{tuple(shape)}; vmap over a batch of actions"
            )
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"task {self.name!r}: action must be a float array, got dtype {dtype}")
        return jnp.asarray(action)

    def step(self, state: State, action: jax.Array) -> State:
        """Applies ``action`` ``[A]`` (clipped to the bounds) for one control step."""
        action = self.check_action(action)
        action = jnp.clip(action, self.action_low, self.action_high)
        return self._step(state, action)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class MjxTask(Task):
    """A task over an MJCF model stepped with MJX; subclasses add cost/observation.

    The MJX model is closed over (not passed as an argument) by every method, so
    jitted callers embed it as a constant, which is measurably cheaper per call.
    """

    def __init__(self, name: str, mj_model: mujoco.MjModel, config: TaskConfig):
        self.name = name
        self.config = config
        self.mj_model = mj_model
        # This process's own device: MJX's default, jax.devices()[0], belongs to process 0
        # in a multi-process run, and the model is closed over as a constant.
        self.mjx_model = mjx.put_model(mj_model, device=jax.local_devices()[0])
        self.episode_length = config.episode_length
        self.frame_skip = config.frame_skip
        self.dt = float(mj_model.opt.timestep) * config.frame_skip
        lo, hi = mj_model.actuator_ctrlrange.T
        limited = mj_model.actuator_ctrllimited.astype(bool)
        if not limited.all():
            raise ValueError(f"task {name!r}: every actuator must be ctrllimited")
        self.action_low = np.asarray(lo, np.float32)
        self.action_high = np.asarray(hi, np.float32)

    def model(self, info: dict[str, jax.Array]) -> mjx.Model:
        """The MJX model an episode is simulated with. The task's own model unless a task
        keeps some model fields per episode in ``state.info`` (a randomised body position,
        say), which it overrides this to put in; ``info`` may hold tracers."""
        del info
        return self.mjx_model

    def make_data(
        self, qpos: jax.Array, qvel: jax.Array, info: dict[str, jax.Array] | None = None
    ) -> mjx.Data:
        """MJX data at ``qpos``/``qvel`` with derived quantities (positions, contacts)
        computed, in the model of an episode with ``info`` (see :meth:`model`)."""
        return self._forward(qpos, qvel, {} if info is None else info)

    @functools.cached_property
    def _forward(self):
        def forward(qpos, qvel, info):
            m = self.model(info)
            data = mjx.make_data(self.mjx_model).replace(qpos=qpos, qvel=qvel)
            return mjx.forward(m, data)

        return jax.jit(forward)

    def is_finite(self, state: State) -> jax.Array:
        """True iff qpos and qvel are finite. A diverged step corrupts both, so checking
        them alone is enough and avoids a reduction over every field of ``mjx.Data``."""
        d = state.data
        return jnp.all(jnp.isfinite(d.qpos)) & jnp.all(jnp.isfinite(d.qvel))

    def apply_action(self, state: State, action: jax.Array) -> mjx.Data:
        """The data to simulate from after the (clipped) ``action``: by default the action
        is the actuators' ``ctrl``; tasks that act otherwise (a mocap target) override it."""
        return state.data.replace(ctrl=action.astype(state.data.ctrl.dtype))

    def _step(self, state: State, action: jax.Array) -> State:
        data = self._physics(self.apply_action(state, action), state.info)
        return state.replace(data=data, t=state.t + 1)

    @functools.cached_property
    def _physics(self):
        # One jitted function of the task: a program that steps the model in several
        # places (planner iterations, policy rollouts, resets) traces MJX once.
        def physics(data, info):
            m = self.model(info)
            return jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(m, d), data)

        return jax.jit(physics)

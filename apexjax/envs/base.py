"""Task interface: pure reset/step/cost over an immutable :class:`State` pytree.

A task is a plain Python object (hashable by identity, so it can be closed over or
passed as a static argument to ``jax.jit``). Every method is a pure function of its
arguments and is jit- and vmap-able; copying a state is copying a pytree.

Three families implement it: :class:`~apexjax.envs.mujoco_task.MujocoTask` (an MJCF
model stepped with MuJoCo MJX or native MuJoCo, the tasks shipped with apexjax), pure-JAX
tasks such as ``point_mass``, and the adapters in :mod:`apexjax.envs.adapters` (Brax
``Env`` and MuJoCo Playground ``MjxEnv``, on MJX).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from apexjax.configs import check_bool, check_float, check_int

__all__ = ["State", "Task", "TaskConfig", "tree_is_finite"]


@struct.dataclass
class State:
    """Environment state.

    Attributes:
      data: the physics state: ``mjx.Data`` on the MJX backend,
        :class:`~apexjax.envs.native.NativeData` on the native one, the wrapped
        environment's own state for adapters.
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

    Class attribute (a fact of the task, not a field a run changes):
      planner_beta: the colored-noise exponent β the task's planner samples with unless a
        config says otherwise (:func:`apexjax.envs.planner_beta`; the iCEM paper's values
        for its tasks: low for fast locomotion, high for slow manipulation). The base
        value, 2.0, serves tasks that set none.
    """

    planner_beta: ClassVar[float] = 2.0

    episode_length: int = 1000
    frame_skip: int = 1

    def __post_init__(self) -> None:
        # Every subclass's int, float and bool fields by their annotation: a bool is no
        # int or float, floats are finite (apexjax.configs.check_*).
        name = type(self).__name__
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                check_int(f"{name}.{f.name}", v)
            elif f.type in ("float", float):
                check_float(f"{name}.{f.name}", v)
            elif f.type in ("bool", bool):
                check_bool(f"{name}.{f.name}", v)
        check_int(f"{name}.episode_length", self.episode_length, ge=1)
        check_int(f"{name}.frame_skip", self.frame_skip, ge=1)


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

    #: whether :meth:`simulate` runs a whole action sequence at once, so that open-loop
    #: rollouts should call it rather than scan :meth:`step` (see
    #: :func:`apexjax.planning.rollout.rollout_open_loop`).
    simulate_is_fused: bool = False

    def simulate(self, state: State, actions: jax.Array, resumable: bool = True) -> State:
        """The states after each of ``actions`` ``[h, A]`` (each clipped to the bounds),
        applied in turn from ``state``: a State whose leaves have a leading axis h.
        Default: ``lax.scan`` over :meth:`step`.

        ``resumable=False`` allows a backend to leave out what only stepping on from the
        returned states needs (natively: MuJoCo's exact float64 state and solver warm
        start); their observations, costs, success and finiteness are the same, and
        stepping from one gives a non-finite state. Planner rollouts, which keep only
        costs, ask for it. The default scan ignores it."""
        del resumable

        def f(s: State, a: jax.Array) -> tuple[State, State]:
            s2 = self.step(s, a)
            return s2, s2

        return jax.lax.scan(f, state, actions)[1]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

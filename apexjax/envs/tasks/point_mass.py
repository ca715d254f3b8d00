"""Point mass: a force-limited, damped 2-D point mass must reach a random goal.

A pure-JAX double integrator (no MuJoCo model): it compiles in about a second, so it suits
quick examples and the tests of the training machinery (data collection, determinism,
resume, device splitting, the command line), where physics is not the point.

Dynamics: ``m dv/dt = max_force * a - damping * v``, ``dp/dt = v``, integrated with
semi-implicit Euler, ``frame_skip`` steps of ``timestep`` per control step (0.1 s by
default, 50 steps per episode). Actions ``a`` are in ``[-1, 1]^2`` (force per axis as a fraction of
``max_force``); the plane is unbounded.
Reset: position and velocity uniform in ``[-init_noise, init_noise]^2`` around rest at
the origin; the goal ``[2]`` (m) uniform over the annulus ``goal_min_radius <= r <=
goal_max_radius`` around the origin, kept in ``state.info["goal"]``.
Cost per step: ``||p' - goal|| + action_cost * ||a||^2`` (m; the position after the step).
Observation: ``[p (2), v (2), goal - p (2)]``.
Success: ``||p - goal|| < success_distance`` (0.05 m) at the last step.
``state.data`` is a :class:`PointMassData` with MuJoCo's field names ``qpos``/``qvel``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from apexjax.configs import ConfigError, check_float
from apexjax.envs.base import State, Task, TaskConfig
from apexjax.envs.registry import register

__all__ = ["PointMassConfig", "PointMassData", "PointMass"]


@dataclasses.dataclass(frozen=True)
class PointMassConfig(TaskConfig):
    """Attributes: episode_length (control steps, ``timestep * frame_skip`` s each),
    frame_skip (integration steps per control step), timestep (s per integration step),
    mass (kg), damping (N s/m, viscous), max_force (N per axis at |a| = 1), action_cost
    (weight of ||a||^2), init_noise (uniform half-width of the start position, m, and
    velocity, m/s), goal_min_radius / goal_max_radius (m, the goal's annulus),
    success_distance (m)."""

    episode_length: int = 50
    frame_skip: int = 2
    timestep: float = 0.05
    mass: float = 1.0
    damping: float = 0.5
    max_force: float = 1.0
    action_cost: float = 0.01
    init_noise: float = 0.05
    goal_min_radius: float = 0.2
    goal_max_radius: float = 0.5
    success_distance: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("timestep", "mass", "max_force", "success_distance"):
            check_float(f"PointMassConfig.{name}", getattr(self, name), gt=0)
        for name in ("damping", "action_cost", "init_noise"):
            check_float(f"PointMassConfig.{name}", getattr(self, name), ge=0)
        if not 0.0 <= self.goal_min_radius <= self.goal_max_radius:
            raise ConfigError(
                "PointMassConfig.goal_min_radius/goal_max_radius: need 0 <= min <= max, got "
                f"{self.goal_min_radius!r}, {self.goal_max_radius!r}"
            )


@struct.dataclass
class PointMassData:
    """Physical state: ``qpos`` ``[2]`` (position, m) and ``qvel`` ``[2]`` (velocity, m/s)."""

    qpos: jax.Array
    qvel: jax.Array


class PointMass(Task):
    """The point-mass reaching task (see the module docstring)."""

    has_success = True

    def __init__(self, config: PointMassConfig = PointMassConfig()):
        self.name = "point_mass"
        self.config = config
        self.episode_length = config.episode_length
        self.frame_skip = config.frame_skip
        self.dt = float(config.timestep) * config.frame_skip
        self.action_low = -np.ones(2, np.float32)
        self.action_high = np.ones(2, np.float32)

    def reset(self, key: jax.Array) -> State:
        kp, kv, kr, ka = jax.random.split(key, 4)
        n = self.config.init_noise
        qpos = jax.random.uniform(kp, (2,), minval=-n, maxval=n)
        qvel = jax.random.uniform(kv, (2,), minval=-n, maxval=n)
        lo, hi = self.config.goal_min_radius, self.config.goal_max_radius
        # uniform over the annulus' area: r^2 uniform
        r = jnp.sqrt(jax.random.uniform(kr, (), minval=lo**2, maxval=hi**2))
        phi = jax.random.uniform(ka, (), minval=-jnp.pi, maxval=jnp.pi)
        goal = jnp.stack([r * jnp.cos(phi), r * jnp.sin(phi)])
        return State(
            data=PointMassData(qpos=qpos, qvel=qvel),
            t=jnp.zeros((), jnp.int32),
            info={"goal": goal},
        )

    def _step(self, state: State, action: jax.Array) -> State:
        c = self.config
        h = jnp.float32(c.timestep)
        force = c.max_force * action.astype(jnp.float32)

        def substep(_: int, pv: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            p, v = pv
            v = v + h * (force - c.damping * v) / c.mass
            return p + h * v, v

        p, v = jax.lax.fori_loop(0, self.frame_skip, substep, (state.data.qpos, state.data.qvel))
        return state.replace(data=PointMassData(qpos=p, qvel=v), t=state.t + 1)

    def distance(self, state: State) -> jax.Array:
        """Position-to-goal distance (m), a float scalar."""
        return jnp.linalg.norm(state.data.qpos - state.info["goal"])

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        del state
        return self.distance(next_state) + self.config.action_cost * jnp.sum(action**2)

    def observation(self, state: State) -> jax.Array:
        """``[p (2), v (2), goal - p (2)]``."""
        p, v = state.data.qpos, state.data.qvel
        return jnp.concatenate([p, v, state.info["goal"] - p])

    def success(self, state: State) -> jax.Array:
        return self.distance(state) < self.config.success_distance


register("point_mass", PointMass, PointMassConfig)

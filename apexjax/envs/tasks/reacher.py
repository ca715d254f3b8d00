"""Reacher: a two-link planar arm brings its fingertip to a random target.

State: ``qpos = [joint0, joint1]``; the target ``[2]`` (x, y in m) is drawn at reset,
uniformly over the annulus ``target_min_radius <= r <= target_max_radius`` around the
shoulder (the arm reaches 0.21 m), and kept in ``state.info["target"]`` (and in
``data.mocap_pos`` so renders show it).
Cost per step: ``||fingertip' - target|| + action_cost * ||a||^2`` (m; the fingertip after
the step). Control period 0.02 s (timestep 0.01 s x frame_skip 2), 50 steps per episode.
Success: ``||fingertip - target|| < success_distance`` (0.03 m) at the last step.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import mujoco

from apexjax.configs import ConfigError
from apexjax.envs.base import State
from apexjax.envs.mujoco_task import MujocoTask, MujocoTaskConfig
from apexjax.envs.registry import register
from apexjax.envs.tasks._assets import load_asset

__all__ = ["ReacherConfig", "Reacher"]


@dataclasses.dataclass(frozen=True)
class ReacherConfig(MujocoTaskConfig):
    """Attributes: episode_length (control steps, 0.02 s each), frame_skip, action_cost
    (weight of ||a||^2), init_noise (uniform half-width of the start joint angles and
    velocities), target_min_radius / target_max_radius (m, the target's annulus),
    success_distance (m)."""

    planner_beta: ClassVar[float] = 2.5

    episode_length: int = 50
    frame_skip: int = 2
    action_cost: float = 0.01
    init_noise: float = 0.1
    target_min_radius: float = 0.05
    target_max_radius: float = 0.2
    success_distance: float = 0.03

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.target_min_radius <= self.target_max_radius <= 0.21:
            raise ConfigError(
                "ReacherConfig.target_min_radius/target_max_radius: need "
                f"0 <= min <= max <= 0.21 (the arm's reach), got {self.target_min_radius!r}, "
                f"{self.target_max_radius!r}"
            )


class Reacher(MujocoTask):
    has_success = True
    # MJX solver: no contacts, only joint limits: one Newton iteration (one-step error
    # unchanged, 2.8x faster MJX step; benchmarks/results/mjx_solver.json)
    mjx_options: ClassVar[dict[str, float]] = {"iterations": 1, "ls_iterations": 4}
    derived_fields = ("xpos",)

    def __init__(self, config: ReacherConfig = ReacherConfig()):
        mj_model = load_asset("reacher.xml")
        super().__init__("reacher", mj_model, config)
        self._tip = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_BODY, "fingertip")

    def reset(self, key: jax.Array) -> State:
        kq, kv, kr, ka = jax.random.split(key, 4)
        n = self.config.init_noise
        qpos = jax.random.uniform(kq, (2,), minval=-n, maxval=n)
        qvel = jax.random.uniform(kv, (2,), minval=-n, maxval=n)
        lo, hi = self.config.target_min_radius, self.config.target_max_radius
        # uniform over the annulus' area: r^2 uniform
        r = jnp.sqrt(jax.random.uniform(kr, (), minval=lo**2, maxval=hi**2))
        phi = jax.random.uniform(ka, (), minval=-jnp.pi, maxval=jnp.pi)
        target = jnp.stack([r * jnp.cos(phi), r * jnp.sin(phi)])
        data = self.make_data(qpos, qvel)
        data = data.replace(mocap_pos=data.mocap_pos.at[0, :2].set(target))
        return State(data=data, t=jnp.zeros((), jnp.int32), info={"target": target})

    def fingertip(self, state: State) -> jax.Array:
        """Fingertip position ``[2]`` (x, y in m)."""
        return state.data.xpos[self._tip, :2]

    def distance(self, state: State) -> jax.Array:
        """Fingertip-to-target distance (m), a float scalar."""
        return jnp.linalg.norm(self.fingertip(state) - state.info["target"])

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        del state
        return self.distance(next_state) + self.config.action_cost * jnp.sum(action**2)

    def observation(self, state: State) -> jax.Array:
        """``[cos q (2), sin q (2), qvel (2), target (2), fingertip - target (2)]``."""
        q, v = state.data.qpos, state.data.qvel
        target = state.info["target"]
        delta = self.fingertip(state) - target
        return jnp.concatenate([jnp.cos(q), jnp.sin(q), v, target, delta])

    def success(self, state: State) -> jax.Array:
        return self.distance(state) < self.config.success_distance


register("reacher", Reacher, ReacherConfig)

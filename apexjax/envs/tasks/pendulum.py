"""Pendulum swing-up: a torque-limited pole starts hanging down and must be held upright.

Cost per step: ``(1 + cos q) / 2 + 0.001 a^2`` (0 upright, 1 hanging; q = 0 hangs down).
Success: within 15 degrees of upright at the last step.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from apexjax.envs.base import State
from apexjax.envs.mujoco_task import MujocoTask, MujocoTaskConfig
from apexjax.envs.registry import register
from apexjax.envs.tasks._assets import load_asset

__all__ = ["PendulumConfig", "PendulumSwingup"]


@dataclasses.dataclass(frozen=True)
class PendulumConfig(MujocoTaskConfig):
    """Attributes: episode_length (control steps, 0.05 s each), frame_skip, action_cost
    (weight of a^2), init_noise (uniform half-width of the start angle/velocity)."""

    planner_beta: ClassVar[float] = 2.0

    episode_length: int = 100
    frame_skip: int = 5
    action_cost: float = 0.001
    init_noise: float = 0.1


class PendulumSwingup(MujocoTask):
    has_success = True
    # MJX solver: MuJoCo's defaults; nothing constrains the pole, so there is nothing to solve

    def __init__(self, config: PendulumConfig = PendulumConfig()):
        super().__init__("pendulum_swingup", load_asset("pendulum.xml"), config)

    def reset(self, key: jax.Array) -> State:
        kq, kv = jax.random.split(key)
        n = self.config.init_noise
        qpos = jax.random.uniform(kq, (1,), minval=-n, maxval=n)
        qvel = jax.random.uniform(kv, (1,), minval=-n, maxval=n)
        return State(data=self.make_data(qpos, qvel), t=jnp.zeros((), jnp.int32))

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        del state
        up = (1.0 + jnp.cos(next_state.data.qpos[0])) / 2.0
        return up + self.config.action_cost * jnp.sum(action**2)

    def observation(self, state: State) -> jax.Array:
        q, v = state.data.qpos[0], state.data.qvel[0]
        return jnp.stack([jnp.cos(q), jnp.sin(q), v])

    def success(self, state: State) -> jax.Array:
        return -jnp.cos(state.data.qpos[0]) > jnp.cos(jnp.deg2rad(15.0))


register("pendulum_swingup", PendulumSwingup, PendulumConfig)

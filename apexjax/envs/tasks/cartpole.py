"""Cart-pole swing-up: the pole starts hanging down and must be swung up and balanced.

State: ``qpos = [x, theta]`` (cart position in m, pole angle with 0 upright and pi hanging).
Cost per step, in ``[0, 1]`` plus a small action term::

    c = 0.8 * (1 - cos theta') / 2 + 0.2 * (x' / 2)^2 + action_cost * a^2

(primes: the state after the step; the rail is limited to ``|x| <= 2`` m, so each term is
at most its weight). Control period 0.05 s (timestep 0.01 s x frame_skip 5); 200 steps =
10 s, so a horizon of 30 steps looks 1.5 s ahead, about one swing of the pole.
Success: the pole within 20 degrees of upright at the last step.
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

__all__ = ["CartpoleConfig", "CartpoleSwingup"]

_RAIL = 2.0  # half-length of the rail (the slider's range), m


@dataclasses.dataclass(frozen=True)
class CartpoleConfig(MujocoTaskConfig):
    """Attributes: episode_length (control steps, 0.05 s each), frame_skip, action_cost
    (weight of a^2), init_noise (uniform half-width of the start position, angle and
    velocities around hanging at rest), success_deg (upright tolerance, degrees)."""

    planner_beta: ClassVar[float] = 0.25

    episode_length: int = 200
    frame_skip: int = 5
    action_cost: float = 0.01
    init_noise: float = 0.05
    success_deg: float = 20.0


class CartpoleSwingup(MujocoTask):
    has_success = True
    # MJX solver: only the rail's joint limit constrains it: 2 Newton iterations solve it
    # exactly (one-step error unchanged, 2.2x faster MJX step;
    # benchmarks/results/mjx_solver.json)
    mjx_options: ClassVar[dict[str, float]] = {"iterations": 2, "ls_iterations": 8}

    def __init__(self, config: CartpoleConfig = CartpoleConfig()):
        super().__init__("cartpole_swingup", load_asset("cartpole.xml"), config)

    def reset(self, key: jax.Array) -> State:
        kq, kv = jax.random.split(key)
        n = self.config.init_noise
        qpos = jnp.array([0.0, jnp.pi]) + jax.random.uniform(kq, (2,), minval=-n, maxval=n)
        qvel = jax.random.uniform(kv, (2,), minval=-n, maxval=n)
        return State(data=self.make_data(qpos, qvel), t=jnp.zeros((), jnp.int32))

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        del state
        x, theta = next_state.data.qpos[0], next_state.data.qpos[1]
        upright = (1.0 - jnp.cos(theta)) / 2.0
        centred = (x / _RAIL) ** 2
        return 0.8 * upright + 0.2 * centred + self.config.action_cost * jnp.sum(action**2)

    def observation(self, state: State) -> jax.Array:
        """``[x, cos theta, sin theta, x_dot, theta_dot]``."""
        q, v = state.data.qpos, state.data.qvel
        return jnp.stack([q[0], jnp.cos(q[1]), jnp.sin(q[1]), v[0], v[1]])

    def success(self, state: State) -> jax.Array:
        return jnp.cos(state.data.qpos[1]) > jnp.cos(jnp.deg2rad(self.config.success_deg))


register("cartpole_swingup", CartpoleSwingup, CartpoleConfig)

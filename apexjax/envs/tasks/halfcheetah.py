"""HalfCheetah running: a planar cheetah runs forward as fast as it can.

Model: the MJCF shipped with brax (``brax/envs/assets/half_cheetah.xml``, Gym's model with
brax's solver options). One load-time edit: its deprecated ``compiler/settotalmass="14"`` is
replaced by ``mj_setTotalmass`` + ``mj_setConst`` on the compiled model (identical masses,
inertias and derived constants, without MuJoCo's deprecation warning). ``qpos = [rootx, rootz, rooty, 6 leg joints]``.
Cost per step (REFERENCE.md)::

    c = -v_x + 0.1 * ||a||^2 + 10 * [|rooty'| > pi/2]

with ``v_x = (rootx' - rootx) / dt`` the forward velocity over the control step (as in Gym)
and ``rooty'`` the root pitch after the step (a flipped cheetah pays 10 per step).
Control period 0.05 s (timestep 0.01 s x frame_skip 5), 1000 steps. No success criterion.
Observation: ``qpos[1:]`` and ``qvel`` (17), and with ``observe_action`` the action applied
in the last step (``ctrl``, 6; zero after a reset). Reset: the model's init qpos + U(-0.1, 0.1),
qvel 0.1 * N(0, 1), as in Gym.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import mujoco

from apexjax.envs.base import State
from apexjax.envs.mujoco_task import MujocoTask, MujocoTaskConfig
from apexjax.envs.registry import register
from apexjax.envs.tasks._assets import load_package_asset

__all__ = ["HalfCheetahConfig", "HalfCheetahRunning"]

_ROOTX, _ROOTY = 0, 2  # qpos indices of the root slider and the root pitch hinge


@dataclasses.dataclass(frozen=True)
class HalfCheetahConfig(MujocoTaskConfig):
    """Attributes: episode_length (control steps, 0.05 s each), frame_skip, action_cost
    (weight of ||a||^2), flip_cost (per step while |root pitch| > pi/2), init_noise
    (uniform half-width on qpos; qvel gets init_noise * N(0, 1)), observe_action (append
    the last applied action to the observation, to show a policy part of what the planner
    carries in its plan; the action is part of the state, so planner rollouts, guidance
    and DAgger need nothing else; it made a worse APEX policy, docs/experiments.md)."""

    planner_beta: ClassVar[float] = 0.25

    episode_length: int = 1000
    frame_skip: int = 5
    action_cost: float = 0.1
    flip_cost: float = 10.0
    init_noise: float = 0.1
    observe_action: bool = False


class HalfCheetahRunning(MujocoTask):
    # MJX solver: Newton converges within 4 iterations on the ground contacts (one-step
    # error unchanged; 2 iterations miss by 0.08 rad): 2.3x faster MJX step
    # (benchmarks/results/mjx_solver_contacts.json)
    mjx_options: ClassVar[dict[str, float]] = {"iterations": 4, "ls_iterations": 8}

    def __init__(self, config: HalfCheetahConfig = HalfCheetahConfig()):
        spec = load_package_asset("brax", "envs/assets/half_cheetah.xml")
        total_mass = spec.compiler.settotalmass
        spec.compiler.settotalmass = -1.0
        mj_model = spec.compile()
        if total_mass > 0:
            mujoco.mj_setTotalmass(mj_model, total_mass)
            mujoco.mj_setConst(mj_model, mujoco.MjData(mj_model))
        super().__init__("halfcheetah_running", mj_model, config)

    def reset(self, key: jax.Array) -> State:
        kq, kv = jax.random.split(key)
        n = self.config.init_noise
        nq, nv = self.mj_model.nq, self.mj_model.nv
        qpos = jnp.asarray(self.mj_model.qpos0) + jax.random.uniform(kq, (nq,), minval=-n, maxval=n)
        qvel = n * jax.random.normal(kv, (nv,))
        return State(data=self.make_data(qpos, qvel), t=jnp.zeros((), jnp.int32))

    def forward_velocity(self, state: State, next_state: State) -> jax.Array:
        """``v_x`` over the control step (m/s), a float scalar."""
        return (next_state.data.qpos[_ROOTX] - state.data.qpos[_ROOTX]) / self.dt

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        flipped = jnp.abs(next_state.data.qpos[_ROOTY]) > jnp.pi / 2
        return (
            -self.forward_velocity(state, next_state)
            + self.config.action_cost * jnp.sum(action**2)
            + self.config.flip_cost * flipped
        )

    def observation(self, state: State) -> jax.Array:
        """``[qpos[1:] (8), qvel (9)]``, then ``ctrl`` (6) with ``observe_action``."""
        parts = [state.data.qpos[1:], state.data.qvel]
        if self.config.observe_action:
            parts.append(state.data.ctrl)
        return jnp.concatenate(parts)


register("halfcheetah_running", HalfCheetahRunning, HalfCheetahConfig)

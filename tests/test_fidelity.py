"""MJX against native MuJoCo: the same states and actions give the same next states.

MJX runs in float32, native MuJoCo in float64. Two comparisons per task:

* one step ("teacher-forced"): from each state of a native trajectory under random
  actions, one control step (frame_skip physics steps) with MJX and with ``mj_step`` from
  a fresh ``MjData`` (so neither has a solver warm start). This checks the dynamics
  everywhere along the trajectory without chaotic error growth. Tolerance: qpos atol
  1e-5 (float32 resolution of angles/positions of order 1-10 is ~1e-6; measured <= 1e-6),
  qvel atol 1e-4 + rtol 1e-4 (contact models solve a constrained system with a few Newton
  iterations in float32; measured <= 5e-5 on half-cheetah, 2e-5 on humanoid).
* open loop, for the contact-free models (cart-pole, reacher): 30 control steps from the
  same start; smooth dynamics keep float32 round-off small (measured <= 2e-6), tolerance
  1e-5 (qpos) and 1e-4 (qvel). Contact-rich models diverge chaotically over long open-loop
  horizons, so only the one-step check applies to them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import apexjax.envs as envs

HORIZON = {"cartpole_swingup": 30, "reacher": 30, "halfcheetah_running": 12, "humanoid_standup": 6}
OPEN_LOOP = ("cartpole_swingup", "reacher")


def _native_step(task, qpos, qvel, action):
    m = task.mj_model
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:], d.ctrl[:] = qpos, qvel, action
    for _ in range(task.frame_skip):
        mujoco.mj_step(m, d)
    return d.qpos.copy(), d.qvel.copy()


@functools.cache
def _setup(name, seed=0):
    """The task, a start (qpos, qvel, info) from its reset, random actions ``[H, A]``, and
    ``simulate(qpos [B], qvel [B], actions [B, L]) -> (qpos [B, L], qvel [B, L])``: L MJX
    control steps from each start. Both tests of a task use the one compiled ``simulate``
    (one step is L = 1 of it; open loop is B = 1), so L = H where there is an open-loop test.
    """
    task = envs.make(name, backend="mjx")
    # Only qpos, qvel and info are returned, so XLA drops reset's forward pass (compiling
    # it cost ~20 s on humanoid); both comparisons start from these fields anyway.
    start = jax.jit(lambda k: (lambda s: (s.data.qpos, s.data.qvel, s.info))(task.reset(k)))
    qpos0, qvel0, info = start(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    lo, hi = task.action_bounds
    actions = rng.uniform(lo, hi, size=(HORIZON[name], task.action_dim)).astype(np.float32)

    def roll(qpos, qvel, acts):
        def f(s, a):
            s = task.step(s, a)
            return s, (s.data.qpos, s.data.qvel)

        s = envs.State(data=task.make_data(qpos, qvel), t=jnp.zeros((), jnp.int32), info=info)
        return jax.lax.scan(f, s, acts)[1]

    return task, (qpos0, qvel0), actions, jax.jit(jax.vmap(roll))


@pytest.mark.parametrize("name", list(HORIZON))
def test_one_step_matches_native(name):
    task, (qpos0, qvel0), actions, simulate = _setup(name)
    # native trajectory (continuous, warm-started): the states to step from
    m = task.mj_model
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:] = np.asarray(qpos0), np.asarray(qvel0)
    starts_p, starts_v = [], []
    for a in actions:
        starts_p.append(d.qpos.copy())
        starts_v.append(d.qvel.copy())
        d.ctrl[:] = a
        for _ in range(task.frame_skip):
            mujoco.mj_step(m, d)
    starts_p, starts_v = np.array(starts_p), np.array(starts_v)

    # from start i, action i (then, where simulate runs longer, more of the same: unused)
    L = len(actions) if name in OPEN_LOOP else 1
    mjx_p, mjx_v = simulate(
        jnp.asarray(starts_p, jnp.float32),
        jnp.asarray(starts_v, jnp.float32),
        jnp.repeat(jnp.asarray(actions)[:, None], L, axis=1),
    )
    mjx_p, mjx_v = mjx_p[:, 0], mjx_v[:, 0]
    nat = [_native_step(task, p, v, a) for p, v, a in zip(starts_p, starts_v, actions, strict=True)]
    nat_p = np.array([n[0] for n in nat])
    nat_v = np.array([n[1] for n in nat])
    assert np.abs(nat_v).max() > 0.1  # the actions actually move the system
    np.testing.assert_allclose(np.asarray(mjx_p), nat_p, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(mjx_v), nat_v, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", OPEN_LOOP)
def test_open_loop_matches_native(name):
    task, (qpos0, qvel0), actions, simulate = _setup(name)
    # the compiled batch of len(actions) episodes, all from the start under these actions
    B = len(actions)
    mjx_p, mjx_v = simulate(
        jnp.repeat(qpos0[None], B, axis=0),
        jnp.repeat(qvel0[None], B, axis=0),
        jnp.repeat(jnp.asarray(actions)[None], B, axis=0),
    )
    mjx_p, mjx_v = mjx_p[0], mjx_v[0]
    m = task.mj_model
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:] = np.asarray(qpos0), np.asarray(qvel0)
    nat_p, nat_v = [], []
    for a in actions:
        d.ctrl[:] = a
        for _ in range(task.frame_skip):
            mujoco.mj_step(m, d)
        nat_p.append(d.qpos.copy())
        nat_v.append(d.qvel.copy())
    np.testing.assert_allclose(np.asarray(mjx_p), np.array(nat_p), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(mjx_v), np.array(nat_v), rtol=0, atol=1e-4)

"""MJX against native MuJoCo: the same states and actions give the same next states.

The reference is the native backend, which is bit-identical to a plain ``mj_step`` loop
(tests/test_native.py). MJX runs in float32 with the task's own solver settings
(``mjx_options``; benchmarks/mjx_solver.py measures them), native MuJoCo in float64 with
the model's. Two comparisons per task, each through one compiled
``simulate(qpos [B], qvel [B], actions [B, L])`` per backend:

* one step ("teacher-forced"): from each state of a native trajectory under random
  actions, one control step (frame_skip physics steps) with MJX and natively, both from a
  fresh state (no solver warm start). This checks the dynamics everywhere along the
  trajectory without chaotic error growth. Tolerance: qpos atol 1e-5 (float32 resolution
  of angles/positions of order 1-10 is ~1e-6), qvel atol 1e-4 + rtol 1e-4 (contact models
  solve a constrained system in float32), and the derived fields a task reads (the
  reacher's body positions) at the new state to 1e-5.
* open loop, for the contact-free models (cart-pole, reacher): 30 control steps from the
  same start; smooth dynamics keep float32 round-off small (measured <= 2e-6), tolerance
  1e-5 (qpos) and 1e-4 (qvel). Contact-rich models diverge chaotically over long open-loop
  horizons, so only the one-step check applies to them.

The door and Fetch are checked the same way in tests/test_door.py and tests/test_fetch.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apexjax.envs as envs

HORIZON = {
    "pendulum_swingup": 12,
    "cartpole_swingup": 30,
    "reacher": 30,
    "halfcheetah_running": 12,
    "humanoid_standup": 6,
}
OPEN_LOOP = ("cartpole_swingup", "reacher")


def _simulator(task, info):
    """``simulate(qpos [B], qvel [B], actions [B, L]) -> (qpos, qvel, derived)`` after each
    of L control steps from each start, jitted."""

    def roll(qpos, qvel, acts):
        def f(s, a):
            s = task.step(s, a)
            return s, (
                s.data.qpos,
                s.data.qvel,
                {k: getattr(s.data, k) for k in task.derived_fields},
            )

        s = envs.State(data=task.make_data(qpos, qvel), t=jnp.zeros((), jnp.int32), info=info)
        return jax.lax.scan(f, s, acts)[1]

    return jax.jit(jax.vmap(roll))


@functools.cache
def _setup(name, seed=0):
    """Both backends of the task, a start (qpos, qvel) from reset, random actions
    ``[H, A]``, the native trajectory's states ``[H]`` under them, and one compiled
    ``simulate`` per backend. Both tests of a task use them (one step is L = 1; open loop
    is B = 1), so L = H where there is an open-loop test."""
    mjx_task = envs.make(name, backend="mjx")
    native = envs.make(name, backend="native")
    start = jax.jit(native.reset)(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    lo, hi = native.action_bounds
    actions = rng.uniform(lo, hi, size=(HORIZON[name], native.action_dim)).astype(np.float32)
    # the native trajectory (continuous, warm-started): the states to step from
    step = jax.jit(native.step)
    s, starts_p, starts_v = start, [], []
    for a in actions:
        starts_p.append(s.data.qpos)
        starts_v.append(s.data.qvel)
        s = step(s, jnp.asarray(a))
    starts = (jnp.stack(starts_p), jnp.stack(starts_v))
    sims = {k: _simulator(t, start.info) for k, t in (("mjx", mjx_task), ("native", native))}
    return native, start, actions, starts, sims


@pytest.mark.parametrize("name", list(HORIZON))
def test_one_step_matches_native(name):
    native, _, actions, (sp, sv), sims = _setup(name)
    # from start i, action i (then, where simulate runs longer, more of the same: unused)
    L = len(actions) if name in OPEN_LOOP else 1
    acts = jnp.repeat(jnp.asarray(actions)[:, None], L, axis=1)
    (mp, mv, md), (np_, nv, nd) = (sims[k](sp, sv, acts) for k in ("mjx", "native"))
    assert np.abs(np.asarray(nv)).max() > 0.1  # the actions actually move the system
    np.testing.assert_allclose(np.asarray(mp[:, 0]), np.asarray(np_[:, 0]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(mv[:, 0]), np.asarray(nv[:, 0]), rtol=1e-4, atol=1e-4)
    for k in native.derived_fields:
        np.testing.assert_allclose(np.asarray(md[k][:, 0]), np.asarray(nd[k][:, 0]), atol=1e-5)


@pytest.mark.parametrize("name", OPEN_LOOP)
def test_open_loop_matches_native(name):
    native, start, actions, _, sims = _setup(name)
    # the compiled batch of len(actions) episodes, all from the start under these actions
    B = len(actions)
    q0 = jnp.repeat(start.data.qpos[None], B, axis=0)
    v0 = jnp.repeat(start.data.qvel[None], B, axis=0)
    acts = jnp.repeat(jnp.asarray(actions)[None], B, axis=0)
    (mp, mv, md), (np_, nv, nd) = (sims[k](q0, v0, acts) for k in ("mjx", "native"))
    np.testing.assert_allclose(np.asarray(mp[0]), np.asarray(np_[0]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(mv[0]), np.asarray(nv[0]), rtol=0, atol=1e-4)
    for k in native.derived_fields:
        np.testing.assert_allclose(np.asarray(md[k][0]), np.asarray(nd[k][0]), atol=1e-5)

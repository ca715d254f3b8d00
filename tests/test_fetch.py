"""The paper's Fetch Pick&Place task against native MuJoCo and the original model.

Three kinds of evidence per task:

* the load-time edits are what the task documents, and the unedited model is what MJX
  rejects (so each edit is needed);
* MJX on the edited model steps like native MuJoCo on the same model (one control step
  from each state of a native trajectory that makes contact, as tests/test_fidelity.py);
* the edited model behaves like the original one in native MuJoCo (the edits keep the
  task's physics), and the task's observation, actions and reset are the original
  environment's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

import apexjax.envs as envs
from apexjax.configs import ConfigError
from apexjax.envs.tasks import fetch as fetch_mod

pytest.importorskip("gymnasium_robotics")


def _native_control_step(m, d, ctrl, frame_skip):
    d.ctrl[:] = ctrl
    for _ in range(frame_skip):
        mujoco.mj_step(m, d)


def _one_step_mjx_vs_native(task, states_p, states_v, actions, info, native_step):
    """MJX control step from each native state vs ``native_step`` from a fresh MjData.

    The same compiled program also returns the task's observation, cost and success,
    batched: the only MJX compile of this task in the suite (see tests/test_envs.py). Reset
    is ``draw_start`` (tested on its own) and then ``make_data``, which this program runs."""

    def one(qpos, qvel, action):
        s = envs.State(data=task.make_data(qpos, qvel, info), t=jnp.zeros((), jnp.int32), info=info)
        s2 = task.step(s, action)
        out = {"obs": task.observation(s2), "cost": task.cost(s, action, s2)}
        out |= {"success": task.success(s2), "finite": task.is_finite(s2), "t": s2.t}
        out |= {"start_obs": task.observation(s)}
        return s2.data.qpos, s2.data.qvel, out

    f32 = lambda x: jnp.asarray(np.asarray(x), jnp.float32)  # noqa: E731
    mjx_p, mjx_v, out = jax.jit(jax.vmap(one))(f32(states_p), f32(states_v), f32(actions))
    nat_p, nat_v = [], []
    for p, v, a in zip(states_p, states_v, actions, strict=True):
        p2, v2 = native_step(p, v, a)
        nat_p.append(p2)
        nat_v.append(v2)
    out = jax.device_get(out)
    return np.asarray(mjx_p), np.asarray(mjx_v), np.array(nat_p), np.array(nat_v), out


# --------------------------------------------------------------------------- Fetch
def test_fetch_config_errors():
    with pytest.raises(ConfigError, match="contacts"):
        fetch_mod.FetchPickAndPlaceConfig(contacts="none")
    with pytest.raises(ConfigError, match="distance_threshold"):
        fetch_mod.FetchPickAndPlaceConfig(distance_threshold=0.0)
    with pytest.raises(ConfigError, match="obj_range"):
        fetch_mod.FetchPickAndPlaceConfig(obj_range=0.05)


def test_fetch_edits_are_needed_and_documented():
    original = fetch_mod.fetch_spec(original=True).compile()
    with pytest.raises(NotImplementedError, match="margin"):
        mjx.put_model(original)
    edited = fetch_mod.fetch_spec().compile()
    assert np.all(edited.geom_margin == 0)
    full = fetch_mod.fetch_spec("full").compile()
    mjx.put_model(full)
    from mujoco.mjx._src import collision_driver

    n_full = len(list(collision_driver.geom_pairs(full)))
    n_task = len(list(collision_driver.geom_pairs(edited)))
    assert (n_full, n_task) == (163, 11)
    for field in ("body_mass", "dof_damping", "actuator_gainprm", "jnt_range", "geom_friction"):
        np.testing.assert_array_equal(getattr(edited, field), getattr(original, field))


def test_fetch_euler_matches_the_original_convention():
    from gymnasium_robotics.utils import rotations

    rng = np.random.default_rng(0)
    q = rng.normal(size=(32, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    mats = np.stack([rotations.quat2mat(x) for x in q])
    ours = jax.vmap(fetch_mod.mat2euler)(jnp.asarray(mats))
    np.testing.assert_allclose(np.asarray(ours), rotations.mat2euler(mats), atol=1e-5)


def _fetch_native_step(task, m, d, a):
    """The task's action (mocap displacement, finger delta) and control step, natively."""
    g = task._gripper_body
    quat = d.xquat[g] + np.array([1.0, 0.0, 1.0, 0.0])
    d.mocap_pos[0] = d.xpos[g] + task.config.move_scale * np.asarray(a[:3])
    d.mocap_quat[0] = quat / np.linalg.norm(quat)
    _native_control_step(m, d, d.qpos[task._act_qpos] + a[3], task.frame_skip)


def _fetch_start(task, m, block_xy):
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:] = task.initial_qpos, task.initial_qvel
    d.qpos[task._obj_qpos : task._obj_qpos + 2] = block_xy
    mujoco.mj_forward(m, d)
    return d


def _scripted_pick_and_place(task, m, d, goal, steps):
    """Above the block, down, close, to the goal: a hand-written expert, natively.
    Returns the actions and the block positions after each step."""
    acts, blocks = [], []
    closed_at = None
    for t in range(steps):
        grip, block = d.site("robot0:grip").xpos.copy(), d.site("object0").xpos.copy()
        if closed_at is None:
            above = np.linalg.norm(grip[:2] - block[:2]) < 0.01
            target = block if above else block + np.array([0.0, 0.0, 0.08])
            finger = 1.0
            if above and abs(grip[2] - block[2]) < 0.01:
                closed_at = t
        else:
            target = block if t - closed_at < 4 else goal
            finger = -1.0
        a = np.append(np.clip((target - grip) / task.config.move_scale, -1, 1), finger)
        _fetch_native_step(task, m, d, a)
        acts.append(a)
        blocks.append(d.site("object0").xpos.copy())
    return np.array(acts, np.float32), np.array(blocks)


_FETCH_CASE = dict(block_xy=np.array([1.28, 0.65]), goal=np.array([1.38, 0.80, 0.60]))


def test_fetch_scripted_pick_and_place_succeeds_on_edited_and_original_model():
    task = envs.make("fetch_pick_and_place")
    # the set-up reproduces the original's start (gymnasium-robotics' FetchPickAndPlace-v4)
    np.testing.assert_allclose(task.initial_gripper_xpos, [1.3418, 0.7491, 0.5347], atol=2e-4)
    assert task.height_offset == pytest.approx(0.4247, abs=2e-4)
    finals = []
    for original in (False, True):
        m = fetch_mod.fetch_spec(original=original).compile()
        d = _fetch_start(task, m, _FETCH_CASE["block_xy"])
        _, blocks = _scripted_pick_and_place(task, m, d, _FETCH_CASE["goal"], task.episode_length)
        finals.append(blocks)
        assert np.linalg.norm(blocks[-1] - _FETCH_CASE["goal"]) <= task.config.distance_threshold
    # the block follows the same path in the edited and the original model
    # (measured: 0.16 mm apart at most)
    assert np.abs(finals[0] - finals[1]).max() < 1e-3, np.abs(finals[0] - finals[1]).max()


def test_fetch_mjx_matches_native_on_the_edited_model():
    task = envs.make("fetch_pick_and_place", backend="mjx")
    m = fetch_mod.fetch_spec().compile()
    d = _fetch_start(task, m, _FETCH_CASE["block_xy"])
    sp, sv, acts = [], [], []
    probe = mujoco.MjData(m)
    for t in range(24):  # the scripted approach and descent toward the block
        sp.append(d.qpos.copy())
        sv.append(d.qvel.copy())
        a, _ = _scripted_pick_and_place(task, m, d, _FETCH_CASE["goal"], 1)
        acts.append(a[0])
        del t
    probe.qpos[:], probe.qvel[:] = d.qpos, d.qvel
    mujoco.mj_forward(m, probe)
    assert probe.ncon >= 4  # the block resting on the table (its 4 contacts there)
    idx = np.arange(len(acts))[-6:]  # the last of the descent, the block on the table

    def native_step(p, v, a):
        d2 = mujoco.MjData(m)
        d2.qpos[:], d2.qvel[:] = p, v
        mujoco.mj_forward(m, d2)
        _fetch_native_step(task, m, d2, a)
        return d2.qpos.copy(), d2.qvel.copy()

    goal = jnp.asarray(_FETCH_CASE["goal"], jnp.float32)
    mp, mv, np_, nv, out = _one_step_mjx_vs_native(
        task, np.array(sp)[idx], np.array(sv)[idx], np.array(acts)[idx], {"goal": goal}, native_step
    )
    np.testing.assert_allclose(mp, np_, rtol=0, atol=1e-4)
    np.testing.assert_allclose(mv, nv, rtol=1e-2, atol=2e-2)

    # the task's quantities, batched: shapes, types, values
    n = len(idx)
    assert out["obs"].shape == (n, task.observation_dim) and np.isfinite(out["obs"]).all()
    np.testing.assert_allclose(out["obs"][:, -3:], np.tile(_FETCH_CASE["goal"], (n, 1)), atol=1e-6)
    assert out["cost"].shape == (n,) and set(np.unique(out["cost"])) <= {0.0, 1.0}
    assert out["success"].dtype == np.bool_ and not out["success"].any()  # block not at the goal
    assert out["finite"].all() and np.all(out["t"] == 1)
    # the observation from the native states: gripper and block where native MuJoCo has them
    d = mujoco.MjData(m)
    for row, i in enumerate(idx):
        d.qpos[:], d.qvel[:] = sp[i], sv[i]
        mujoco.mj_forward(m, d)
        np.testing.assert_allclose(out["start_obs"][row, :3], d.site("robot0:grip").xpos, atol=1e-5)
        np.testing.assert_allclose(out["start_obs"][row, 3:6], d.site("object0").xpos, atol=1e-5)


def test_fetch_reset_draws_block_and_goal_as_the_original():
    """Reset's random part (draw_start); reset is it and then make_data (compiled above)."""
    task = envs.make("fetch_pick_and_place")
    cfg, n = task.config, 512
    qpos, goal = jax.jit(jax.vmap(task.draw_start))(jax.random.split(jax.random.key(0), n))
    qpos, goal = np.asarray(qpos), np.asarray(goal)
    start = np.asarray(task.initial_gripper_xpos)
    obj = task._obj_qpos
    # only the block's x, y move
    others = np.setdiff1d(np.arange(qpos.shape[1]), [obj, obj + 1])
    np.testing.assert_array_equal(qpos[:, others], np.tile(task.initial_qpos[others], (n, 1)))
    off = qpos[:, obj : obj + 2] - start[:2]
    assert np.all(np.abs(off) <= cfg.obj_range + 1e-6)
    assert np.all(np.linalg.norm(off, axis=1) >= 0.1 - 1e-6)
    assert off.std(axis=0).min() > 0.05
    assert np.all(np.abs(goal[:, :2] - start[:2]) <= cfg.target_range + 1e-6)
    lift = goal[:, 2] - task.height_offset
    assert np.all((lift >= -1e-6) & (lift <= cfg.max_goal_height + 1e-6))
    on_table = np.isclose(lift, 0.0, atol=1e-6).mean()
    assert 0.4 < on_table < 0.6, on_table  # half the goals in the air
    flat = envs.make("fetch_pick_and_place", target_in_the_air=False)
    _, goal2 = jax.jit(jax.vmap(flat.draw_start))(jax.random.split(jax.random.key(1), 64))
    np.testing.assert_allclose(np.asarray(goal2)[:, 2], flat.height_offset, atol=1e-6)

"""Every registered task: reset/step under jit and vmap, shapes, errors, config validation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apexjax.envs as envs
from apexjax.configs import ConfigError

TASKS = envs.names()
BATCH = 4
# The paper's manipulation tasks compile MJX programs of minutes on CPU; their reset, step,
# observation, cost and success run batched under jit in the one program that
# tests/test_door.py and tests/test_fetch.py compile to check them against native MuJoCo.
# Trace-time checks below (eval_shape) still cover every task.
COMPILED_ELSEWHERE = {"door", "fetch_pick_and_place"}


def _with(data, **fields):
    """``data`` with some fields set, for synthetic states: natively qpos/qvel are views
    (outputs of the physics), so the test writes the views."""
    if isinstance(data, envs.NativeData):
        return data.replace(views={**data.views, **fields})
    return data.replace(**fields)


@functools.cache
def _task(name: str) -> envs.Task:
    return envs.make(name)


@functools.cache
def _batched(name: str):
    """One compiled call per task: reset a batch, step it once with random actions."""
    task = _task(name)

    def one(key):
        ka, kr = jax.random.split(key)
        state = task.reset(kr)
        lo, hi = task.action_bounds
        action = jax.random.uniform(ka, (task.action_dim,), minval=lo, maxval=hi)
        nxt = task.step(state, action)
        return {
            "obs": task.observation(state),
            "next_obs": task.observation(nxt),
            "cost": task.cost(state, action, nxt),
            "success": task.success(nxt),
            "finite": task.is_finite(nxt),
            "t": nxt.t,
            "qpos": state.data.qpos,
            "info": state.info,
        }

    keys = jax.random.split(jax.random.key(0), BATCH)
    return jax.device_get(jax.jit(jax.vmap(one))(keys))


@pytest.mark.parametrize("name", [n for n in TASKS if n not in COMPILED_ELSEWHERE])
def test_reset_and_step_batched(name):
    task = _task(name)
    out = _batched(name)
    obs_dim = task.observation_dim
    assert out["obs"].shape == (BATCH, obs_dim)
    assert out["next_obs"].shape == (BATCH, obs_dim)
    assert np.all(np.isfinite(out["obs"])) and np.all(np.isfinite(out["next_obs"]))
    assert out["cost"].shape == (BATCH,) and np.issubdtype(out["cost"].dtype, np.floating)
    assert np.all(np.isfinite(out["cost"]))
    assert out["success"].shape == (BATCH,) and out["success"].dtype == np.bool_
    assert out["finite"].dtype == np.bool_ and out["finite"].all()
    np.testing.assert_array_equal(out["t"], np.ones(BATCH, np.int32))
    # different keys give different initial states (the observation holds what is drawn)
    assert not np.allclose(out["obs"][0], out["obs"][1])
    assert task.action_low.shape == task.action_high.shape == (task.action_dim,)
    assert np.all(task.action_low < task.action_high)
    assert task.dt > 0 and task.episode_length >= 1


@pytest.mark.parametrize("name", TASKS)
def test_wrong_action_shape_raises_at_trace_time(name):
    task = _task(name)
    state = jax.eval_shape(task.reset, jax.random.key(0))
    bad = jax.ShapeDtypeStruct((task.action_dim + 1,), jnp.float32)
    with pytest.raises(
        ValueError, match=rf"{name}.*\({task.action_dim},\).*\({task.action_dim + 1},\)"
    ):
        jax.eval_shape(task.step, state, bad)
    batched = jax.ShapeDtypeStruct((BATCH, task.action_dim), jnp.float32)
    with pytest.raises(ValueError, match=name):
        jax.eval_shape(task.step, state, batched)


@pytest.mark.parametrize("name", TASKS)
def test_int_action_raises_type_error(name):
    task = _task(name)
    state = jax.eval_shape(task.reset, jax.random.key(0))
    with pytest.raises(TypeError, match=rf"{name}.*int32"):
        jax.eval_shape(task.step, state, jax.ShapeDtypeStruct((task.action_dim,), jnp.int32))


@pytest.mark.parametrize("name", TASKS)
def test_is_finite_detects_nan_in_qvel(name):
    task = _task(name)
    state = jax.eval_shape(task.reset, jax.random.key(0))
    # concrete zeros of the right structure: is_finite only reads the leaves
    state = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), state)
    assert bool(task.is_finite(state))
    bad = state.replace(data=_with(state.data, qvel=state.data.qvel.at[0].set(jnp.nan)))
    assert not bool(task.is_finite(bad))


def test_success_flags():
    assert _task("cartpole_swingup").has_success and _task("reacher").has_success
    assert _task("point_mass").has_success
    assert not _task("halfcheetah_running").has_success
    assert not _task("humanoid_standup").has_success


def test_cartpole_starts_hanging_and_costs_are_in_range():
    out = _batched("cartpole_swingup")
    np.testing.assert_allclose(np.cos(out["qpos"][:, 1]), -1.0, atol=0.01)
    assert np.all(out["cost"] > 0.75) and np.all(out["cost"] < 0.82)
    assert not out["success"].any()


def test_reacher_targets_inside_the_annulus_and_cost_is_the_distance():
    task = _task("reacher")
    out = _batched("reacher")
    r = np.linalg.norm(out["info"]["target"], axis=1)
    cfg = task.config
    assert np.all((r >= cfg.target_min_radius - 1e-6) & (r <= cfg.target_max_radius + 1e-6))
    assert len(np.unique(np.round(r, 6))) == BATCH
    distance = np.linalg.norm(out["next_obs"][:, 8:10], axis=1)  # fingertip - target
    assert np.all(out["cost"] >= distance - 1e-6)
    assert np.all(out["cost"] <= distance + task.config.action_cost * 2 + 1e-6)


def test_point_mass_goals_inside_the_annulus_and_cost_is_the_distance():
    task = _task("point_mass")
    out = _batched("point_mass")
    cfg = task.config
    r = np.linalg.norm(out["info"]["goal"], axis=1)
    assert np.all((r >= cfg.goal_min_radius - 1e-6) & (r <= cfg.goal_max_radius + 1e-6))
    assert len(np.unique(np.round(r, 6))) == BATCH
    assert np.all(np.abs(out["qpos"]) <= cfg.init_noise)
    distance = np.linalg.norm(out["next_obs"][:, 4:6], axis=1)  # goal - position
    assert np.all(out["cost"] >= distance - 1e-6)
    assert np.all(out["cost"] <= distance + cfg.action_cost * 2 + 1e-6)
    assert not out["success"].any()  # the goal is farther than success_distance at the start
    assert task.dt == pytest.approx(cfg.timestep * cfg.frame_skip)


def test_point_mass_dynamics_are_the_damped_double_integrator():
    task = envs.make("point_mass", damping=0.5, mass=2.0, max_force=3.0, frame_skip=4)
    s = task.reset(jax.random.key(0))
    s = s.replace(data=s.data.replace(qpos=jnp.array([0.1, -0.2]), qvel=jnp.array([0.3, 0.0])))
    step = jax.jit(task.step)
    nxt = step(s, jnp.array([1.0, -0.5]))
    p, v = np.array([0.1, -0.2]), np.array([0.3, 0.0])
    h, f = task.config.timestep, 3.0 * np.array([1.0, -0.5])
    for _ in range(4):  # semi-implicit Euler, frame_skip substeps
        v = v + h * (f - 0.5 * v) / 2.0
        p = p + h * v
    np.testing.assert_allclose(nxt.data.qpos, p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nxt.data.qvel, v, rtol=1e-5, atol=1e-6)
    # an action outside the bounds is clipped to them
    clipped = step(s, jnp.array([5.0, -5.0]))
    at_bounds = step(s, jnp.array([1.0, -1.0]))
    np.testing.assert_array_equal(clipped.data.qvel, at_bounds.data.qvel)
    # at the goal, at rest, with no action: success and zero cost
    goal = s.info["goal"]
    there = s.replace(data=s.data.replace(qpos=goal, qvel=jnp.zeros(2)))
    assert bool(task.success(there))
    assert float(task.cost(there, jnp.zeros(2), step(there, jnp.zeros(2)))) == 0.0


def test_halfcheetah_cost_formula():
    task = _task("halfcheetah_running")
    state = jax.eval_shape(task.reset, jax.random.key(0))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), state)

    def at(x, pitch):
        qpos = zeros.data.qpos.at[0].set(x).at[2].set(pitch)
        return zeros.replace(data=_with(zeros.data, qpos=qpos))

    a = jnp.full((task.action_dim,), 0.5)
    ctrl = 0.1 * float(jnp.sum(a**2))
    c = task.cost(at(0.0, 0.0), a, at(0.1, 0.3))
    np.testing.assert_allclose(c, -0.1 / task.dt + ctrl, rtol=1e-5)
    c_flip = task.cost(at(0.0, 0.0), a, at(0.1, -2.0))
    np.testing.assert_allclose(c_flip, -0.1 / task.dt + ctrl + 10.0, rtol=1e-5)


def test_halfcheetah_observe_action_appends_the_applied_action():
    """observe_action: the observation ends with the action applied in the last step (zero
    after a reset), on a single step and inside a fused open-loop rollout alike."""
    task = envs.make("halfcheetah_running", backend="native", observe_action=True)
    plain = _task("halfcheetah_running")
    assert task.observation_dim == plain.observation_dim + task.action_dim
    actions = jnp.stack([jnp.linspace(-0.5, 0.5, 6), jnp.linspace(0.9, -0.9, 6)])

    def run(key):
        s = task.reset(key)
        s1 = task.step(s, jnp.array([2.0, 0, 0, 0, 0, 0]))  # clipped to the bounds
        rolled = task.simulate(s, actions)
        return task.observation(s), task.observation(s1), jax.vmap(task.observation)(rolled)

    obs0, obs1, rolled = jax.jit(run)(jax.random.key(0))
    np.testing.assert_array_equal(obs0[-6:], 0.0)
    np.testing.assert_array_equal(obs1[-6:], [1.0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(rolled[:, -6:], actions, rtol=1e-6)
    ref = jax.jit(lambda k: plain.observation(plain.reset(k)))(jax.random.key(0))
    np.testing.assert_array_equal(obs0[:-6], ref)


def test_humanoid_cost_is_minus_torso_height():
    task = _task("humanoid_standup")
    out = _batched("humanoid_standup")
    np.testing.assert_allclose(out["qpos"][:, 2], 0.15, atol=0.011)
    assert np.all(out["cost"] < 0)  # the height term dominates a bounded action cost
    assert task.dt == pytest.approx(0.015)


def test_make_unknown_task():
    with pytest.raises(ConfigError, match=r"unknown task 'nope'.*cartpole_swingup"):
        envs.make("nope")


def test_make_unknown_override():
    with pytest.raises(ConfigError, match=r"cartpole_swingup.*unknown override.*bogus.*allowed"):
        envs.make("cartpole_swingup", bogus=1)


@pytest.mark.parametrize(
    "name, override, parts",
    [
        ("cartpole_swingup", {"episode_length": 0}, ["episode_length", ">= 1", "0"]),
        ("reacher", {"frame_skip": 1.5}, ["frame_skip", "expected an int", "1.5"]),
        ("halfcheetah_running", {"action_cost": "x"}, ["action_cost", "expected a float"]),
        ("humanoid_standup", {"init_noise": float("nan")}, ["init_noise", "finite"]),
        ("reacher", {"target_max_radius": 0.5}, ["target_max_radius", "0.21", "0.5"]),
        ("point_mass", {"mass": 0.0}, ["mass", "> 0", "0.0"]),
        ("point_mass", {"damping": -1.0}, ["damping", ">= 0", "-1.0"]),
        ("point_mass", {"goal_min_radius": 0.6}, ["goal_min_radius", "min <= max", "0.6"]),
    ],
)
def test_make_invalid_value(name, override, parts):
    with pytest.raises(ConfigError) as err:
        envs.make(name, **override)
    for part in parts:
        assert part in str(err.value)


def test_overrides_reach_the_task():
    task = envs.make("cartpole_swingup", episode_length=50, frame_skip=2)
    assert task.episode_length == 50 and task.frame_skip == 2
    assert task.dt == pytest.approx(0.02)

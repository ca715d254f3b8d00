"""The NumPy iCEM on native MuJoCo (the planner benchmark's baseline and a second,
independent implementation of the planner) and the planner benchmark section."""

from __future__ import annotations

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

import apexjax.envs as envs
from apexjax.planning import icem
from apexjax.reference import numpy_icem

TASKS = ("cartpole_swingup", "pendulum_swingup")
# twins that take the apexjax task's (load-time edited) model
MODEL_TASKS = ("halfcheetah_running", "door")


def test_module_imports_no_jax():
    code = (
        "import sys, apexjax.reference.numpy_icem; assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name", TASKS)
def test_native_task_matches_apexjax_task(name):
    task = envs.make(name)
    twin = numpy_icem.native_task_from(task)
    default = numpy_icem.native_task(name)  # the MJCF apexjax ships, the config defaults
    for t in (twin, default):
        assert t.frame_skip == task.frame_skip
        assert t.episode_length == task.episode_length
        np.testing.assert_array_equal(t.action_low, task.action_low)
        np.testing.assert_array_equal(t.action_high, task.action_high)
    assert default.model.opt.timestep == task.mj_model.opt.timestep
    assert (default.model.nq, default.model.nv, default.model.nu) == (
        task.mj_model.nq,
        task.mj_model.nv,
        task.mj_model.nu,
    )
    with pytest.raises(ValueError, match="unknown config field"):
        numpy_icem.native_task(name, no_such_field=1.0)


@pytest.mark.parametrize("name", TASKS + MODEL_TASKS)
def test_cost_and_success_match_apexjax(name):
    # a non-default weight must carry over
    weight = {"door": {"velocity_cost": 2e-5}}.get(name, {"action_cost": 0.05})
    task = envs.make(name, **weight)
    twin = numpy_icem.native_task_from(task)
    rng = np.random.default_rng(0)
    n = 64
    nq, nv = task.mj_model.nq, task.mj_model.nv
    qpos = rng.uniform(-4, 4, (n, nq)).astype(np.float32)
    prev = rng.uniform(-4, 4, (n, nq)).astype(np.float32)
    if name == "door":  # hinge angles around the bonus thresholds
        qpos[:, twin_hinge(task)] = rng.uniform(0.0, 1.6, n)
    qvel = rng.uniform(-3, 3, (n, nv)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, task.action_dim)).astype(np.float32)
    data = mjx.make_data(task.mjx_model)  # costs read qpos/qvel only: any data type does

    def at(q, v):
        return envs.State(data=data.replace(qpos=q, qvel=v), t=jnp.ones((), jnp.int32))

    cost = jax.vmap(lambda q0, q, v, a: task.cost(at(q0, v), a, at(q, v)))(prev, qpos, qvel, act)
    succ = jax.vmap(lambda q, v: task.success(at(q, v)))(qpos, qvel) if task.has_success else None
    q64, v64, a64, p64 = (x.astype(np.float64) for x in (qpos, qvel, act, prev))
    np.testing.assert_allclose(
        twin.cost(q64, v64, a64, p64), np.asarray(cost), rtol=1e-5, atol=1e-5
    )
    ours = np.array([twin.success(q, v) for q, v in zip(q64, v64, strict=True)])
    if succ is None:
        assert not ours.any()
    else:
        np.testing.assert_array_equal(ours, np.asarray(succ))
        assert 0 < ours.sum() < n  # both outcomes exercised


def twin_hinge(task):
    return int(task._hinge)


def test_model_twins_need_the_task_model():
    with pytest.raises(ValueError, match="mj_model"):
        numpy_icem.native_task("door")
    task = envs.make("door", shaped=True)
    with pytest.raises(ValueError, match="unshaped"):
        numpy_icem.native_task_from(task)


def test_simulate_holds_each_action_for_frame_skip_steps():
    task = numpy_icem.native_task("cartpole_swingup")
    m = task.model
    cfg = icem.ICEMConfig(population=8, elites=2, horizon=6)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (3, cfg.horizon, 1))
    d = mujoco.MjData(m)
    d.qpos[:] = [0.3, 2.5]
    d.qvel[:] = [0.1, -0.4]
    mujoco.mj_forward(m, d)
    full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.empty(mujoco.mj_stateSize(m, full))
    mujoco.mj_getState(m, d, state, full)
    with numpy_icem.NumpyICEM(cfg, task, nthread=2) as planner:
        costs, finite = planner.simulate(state, actions)
    assert costs.shape == (3, cfg.horizon) and finite.all()
    for p in range(3):
        d2 = mujoco.MjData(m)
        mujoco.mj_setState(m, d2, state, full)
        for t in range(cfg.horizon):
            before = d2.qpos.copy()
            d2.ctrl[:] = actions[p, t]
            for _ in range(task.frame_skip):
                mujoco.mj_step(m, d2)
            want = task.cost(d2.qpos, d2.qvel, actions[p, t], before)
            np.testing.assert_allclose(costs[p, t], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "cfg",
    [
        icem.ICEMConfig(population=10, elites=3, horizon=7, decay=1.5, iterations=4),
        icem.ICEMConfig(population=40, shift_elites=False, keep_fraction=0.5),
        icem.cem_config(population=12, elites=4, iterations=2, horizon=5),
    ],
)
def test_budget_matches_apexjax(cfg):
    assert numpy_icem.population_sizes(cfg) == list(icem.population_sizes(cfg))
    assert numpy_icem.num_keep(cfg) == icem.num_keep(cfg)
    assert numpy_icem.simulated_per_step(cfg) == icem.simulated_per_step(cfg)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 3.0])
def test_colored_noise_spectrum_and_variance(beta):
    n = 64
    y = numpy_icem.colored_noise(np.random.default_rng(2), beta, (4000, n, 1))
    assert y.shape == (4000, n, 1)
    assert abs(y.mean()) < 0.05 * max(1.0, beta)
    np.testing.assert_allclose(y.var(axis=(0, 2)).mean(), 1.0, rtol=0.05)
    power = (np.abs(np.fft.rfft(y[..., 0], axis=1)) ** 2).mean(axis=0)  # [n/2 + 1]
    k = np.arange(1, n // 2)  # interior frequencies
    slope = np.polyfit(np.log(k), np.log(power[k]), 1)[0]
    assert abs(slope + beta) < 0.15, slope
    # independent across the non-time axes
    c = np.corrcoef(y[:, 5, 0], y[:, 5, 0][::-1])[0, 1]
    assert abs(c) < 0.1


def test_colored_noise_short_axis_is_white():
    y = numpy_icem.colored_noise(np.random.default_rng(0), 2.0, (1000, 1, 3))
    np.testing.assert_allclose(y.var(), 1.0, rtol=0.1)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(execute="mean"),
        dict(cost_aggregation="min"),
        dict(cost_aggregation="final", use_mean_actions=False, keep_elites=False),
        dict(beta=0.0, shift_elites=False, momentum=0.0),
    ],
)
def test_plan_options_give_actions_in_bounds(overrides):
    task = numpy_icem.native_task("cartpole_swingup")
    cfg = icem.ICEMConfig(population=8, elites=2, horizon=5, **overrides)
    r = numpy_icem.run_mpc(cfg, task, 1, num_steps=3, nthread=1, seed=3)
    assert r["actions"].shape == (1, 3, 1)
    assert np.all(np.abs(r["actions"]) <= 1.0)
    assert np.isfinite(r["returns"]).all()


def test_extra_candidates_are_refused():
    task = numpy_icem.native_task("pendulum_swingup")
    with pytest.raises(ValueError, match="extra candidates"):
        numpy_icem.NumpyICEM(icem.ICEMConfig(num_extra_candidates=2), task, nthread=0)


def test_swings_up_the_pendulum():
    task = numpy_icem.native_task("pendulum_swingup")
    cfg = icem.ICEMConfig(population=24, elites=6, horizon=20, beta=2.0)
    rng = np.random.default_rng(0)
    qpos, qvel = task.reset(rng)
    assert -math.cos(qpos[0]) < -0.9  # starts hanging down
    with numpy_icem.NumpyICEM(cfg, task, nthread=2, seed=0) as planner:
        r = numpy_icem.run_episode(planner, qpos, qvel)
    assert r.success
    assert r.costs.shape == (task.episode_length,)
    # upright for the last quarter of the episode: per-step cost near its minimum
    assert r.costs[-task.episode_length // 4 :].max() < 0.05
    assert r.episode_return > -45.0


def test_planner_section_checks_the_device_count():
    """The section itself is measured by ``apexjax bench`` (its MPC compile is too long for
    the suite); asking for more devices than exist is a clear error before any compile."""
    from apexjax.bench.planner import run

    with pytest.raises(ValueError, match="device"):
        run("pendulum_swingup", quick=True, devices=len(jax.devices()) + 1)

"""iCEM planner: config validation, each option's effect, determinism, vmap, non-finite."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax.configs import ConfigError, parse_overrides
from apexjax.envs.base import State, Task
from apexjax.planning import icem
from apexjax.planning.rollout import rollout_closed_loop, rollout_open_loop


class Point(Task):
    """A 2-D integrator: cheap to compile, known optimum (reach TARGET)."""

    name = "point"
    action_low = np.array([-1.0, -1.0], np.float32)
    action_high = np.array([1.0, 1.0], np.float32)
    episode_length = 20
    frame_skip = 1
    dt = 0.1
    TARGET = 0.5

    def reset(self, key):
        return State(data=jax.random.uniform(key, (2,), minval=-0.1, maxval=0.1), t=jnp.int32(0))

    def _step(self, s, a):
        return s.replace(data=s.data + 0.1 * a, t=s.t + 1)

    def cost(self, s, a, s2):
        return jnp.sum((s2.data - self.TARGET) ** 2)

    def observation(self, s):
        return s.data


class NanPoint(Point):
    """Diverges (NaN state) whenever the first action component is above `limit`."""

    def __init__(self, limit):
        self.limit = limit

    def _step(self, s, a):
        s2 = super()._step(s, a)
        return s2.replace(data=jnp.where(a[0] > self.limit, jnp.nan, s2.data))


TASK = Point()
S0 = TASK.reset(jax.random.key(0))
SMALL = icem.ICEMConfig(population=12, elites=4, horizon=5, iterations=3, keep_fraction=0.5)


def _plan(config, task=TASK, **kw):
    return jax.jit(lambda k, p, s: icem.plan(config, k, p, s, task, **kw))


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("field", "value", "msg"),
    [
        ("elites", 21, "population/2"),
        ("elites", 1, "[2,"),
        ("decay", 0.9, ">= 1"),
        ("horizon", 0, ">= 1"),
        ("keep_fraction", 1.5, "[0, 1]"),
        ("momentum", 1.0, "[0, 1)"),
        ("init_std", 0.0, "> 0"),
        ("execute", "worst", "'best'"),
        ("cost_aggregation", "mean", "'sum'"),
        ("iterations", 2.0, "int"),
        ("shift_elites", 1, "bool"),
    ],
)
def test_config_errors_name_field_value_and_allowed(field, value, msg):
    with pytest.raises(ConfigError) as e:
        icem.ICEMConfig(**{field: value})
    text = str(e.value)
    assert f"ICEMConfig.{field}" in text and repr(value) in text and msg in text


def test_overrides_and_cem_preset():
    c = parse_overrides(icem.ICEMConfig, ["beta=0.25", "execute=mean", "keep_elites=off"])
    assert (c.beta, c.execute, c.keep_elites) == (0.25, "mean", False)
    with pytest.raises(ConfigError, match="unknown field"):
        parse_overrides(icem.ICEMConfig, ["betta=1"])
    cem = icem.cem_config(population=20)
    assert cem.beta == 0 and cem.momentum == 0 and cem.population == 20
    assert not (cem.keep_elites or cem.shift_elites or cem.use_mean_actions)
    # the authors' CEM: truncated Gaussian, the same population at every iteration
    assert cem.sampling == "truncated" and icem.population_sizes(cem) == (20, 20, 20)
    hash(cem)  # static argument of jit
    with pytest.raises(ConfigError, match="white noise"):
        icem.cem_config(beta=2.0)
    with pytest.raises(ConfigError, match="noise_normalization"):
        icem.ICEMConfig(noise_normalization="package")


def test_truncated_sampling_stays_inside_without_piling_up_at_the_bounds():
    """Clipping puts the mass beyond a bound onto it; truncation redraws it inside."""
    low, high = np.array([-1.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32)
    mean = jnp.full((5, 2), 0.6)
    std = jnp.full((5, 2), 0.8)
    for cfg in (
        icem.cem_config(population=4000, elites=4, horizon=5),
        icem.cem_config(population=4000, elites=4, horizon=5, sampling="clip", decay=1.25),
    ):
        ps = icem.init(cfg, (low, high))
        x = np.asarray(icem.sample_population(cfg, jax.random.key(0), ps, mean, std, 0))
        assert np.all((x >= -1.0) & (x <= 1.0))
        at_bound = np.mean(np.isclose(np.abs(x), 1.0))
        if cfg.sampling == "truncated":
            assert at_bound == 0.0
            # a Gaussian truncated to [-1, 1]: the mass is moved inside, mean below 0.6
            assert 0.1 < x.mean() < 0.4
        else:
            assert at_bound > 0.25  # P(0.6 + 0.8 z > 1) = P(z > 0.5) = 0.31


def test_decay_population_sizes():
    assert icem.population_sizes(icem.ICEMConfig()) == (40, 32, 25)
    c = icem.ICEMConfig(population=40, elites=10, iterations=5, decay=2.0)
    assert icem.population_sizes(c) == (40, 20, 20, 20, 20)  # never below 2K
    assert icem.population_sizes(icem.ICEMConfig(decay=1.0)) == (40, 40, 40)
    # 40 + 3 shifted + 32 + 25 sequences of 30 steps
    assert icem.simulated_per_step(icem.ICEMConfig()) == 100 * 30


# ------------------------------------------------------------------ plan
def test_plan_shapes_determinism_and_improvement():
    ps = icem.init(SMALL, TASK.action_bounds)
    assert ps.elite_costs.shape == (2,) and np.all(np.isinf(ps.elite_costs))
    f = _plan(SMALL)
    a1, ps1, info = f(jax.random.key(1), ps, S0)
    a2, _, info2 = f(jax.random.key(1), ps, S0)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(info.best_actions, info2.best_actions)
    a3, _, _ = f(jax.random.key(2), ps, S0)
    assert not np.array_equal(a1, a3)
    assert a1.shape == (2,) and info.best_actions.shape == (5, 2)
    assert info.elite_costs.shape == (4,) and np.all(np.diff(info.elite_costs) >= 0)
    assert int(info.num_simulated_steps) == icem.simulated_per_step(SMALL)
    assert not bool(info.all_nonfinite)
    # executes the best sequence's first action; its cost is what a replay gives
    np.testing.assert_allclose(a1, info.best_actions[0])
    c, _, _, ok = rollout_open_loop(TASK, S0, info.best_actions)
    np.testing.assert_allclose(c.sum(), info.best_cost, rtol=1e-5)
    assert bool(ok) and np.all(a1 > 0)  # heads to the target at +0.5
    # mean shifted, std reset, elites remembered
    np.testing.assert_allclose(ps1.std, ps.std)
    np.testing.assert_allclose(ps1.mean[-1], ps1.mean[-2])
    assert np.all(np.isfinite(ps1.elite_costs))
    # replanning from the same state with memory does at least as well (shifted elites)
    _, _, info3 = f(jax.random.key(3), ps1, S0)
    assert np.isfinite(info3.best_cost)


def test_vmapped_plan_equals_separate_plans():
    ps = icem.init(SMALL, TASK.action_bounds)
    states = jax.vmap(TASK.reset)(jax.random.split(jax.random.key(5), 4))
    keys = jax.random.split(jax.random.key(6), 4)
    pss = jax.tree.map(lambda x: jnp.broadcast_to(x, (4, *x.shape)), ps)
    f = _plan(SMALL)
    va, vps, vinfo = jax.jit(jax.vmap(lambda k, p, s: icem.plan(SMALL, k, p, s, TASK)))(
        keys, pss, states
    )
    for i in range(4):
        s = jax.tree.map(lambda x, i=i: x[i], states)
        a, p, info = f(keys[i], ps, s)
        np.testing.assert_allclose(va[i], a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(vps.mean[i], p.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(vinfo.best_cost[i], info.best_cost, rtol=1e-5)


def test_shifted_elites_enter_next_population():
    c = dataclasses.replace(SMALL, iterations=1)
    ps = icem.init(c, TASK.action_bounds)
    _, ps1, _ = _plan(c)(jax.random.key(1), ps, S0)
    pop = icem.sample_population(c, jax.random.key(9), ps1, ps1.mean, ps1.std, 0)
    n, k = c.population, icem.num_keep(c)
    assert pop.shape == (n + k, 5, 2)
    np.testing.assert_array_equal(pop[n:, :-1], ps1.elite_actions[:, 1:])
    # empty memory: fresh samples instead, nothing wasted; shift off: no extra rows
    pop0 = icem.sample_population(c, jax.random.key(9), ps, ps.mean, ps.std, 0)
    assert not np.allclose(pop0[n:, :-1], ps.elite_actions[:, 1:])
    off = dataclasses.replace(c, shift_elites=False)
    assert icem.sample_population(off, jax.random.key(9), ps1, ps1.mean, ps1.std, 0).shape[0] == n


def test_mean_is_evaluated_at_last_iteration():
    # zero-target task: the initial mean (all zeros) is the exact optimum of cost |a|^2
    class Quiet(Point):
        def cost(self, s, a, s2):
            return jnp.sum(a**2)

    task = Quiet()
    on = icem.ICEMConfig(population=8, elites=2, horizon=4, iterations=1, momentum=0.0)
    off = dataclasses.replace(on, use_mean_actions=False)
    ps = icem.init(on, task.action_bounds)
    _, _, info_on = _plan(on, task)(jax.random.key(0), ps, S0)
    _, _, info_off = _plan(off, task)(jax.random.key(0), ps, S0)
    assert float(info_on.best_cost) == 0.0
    assert float(info_off.best_cost) > 0.0


def test_keep_elites_never_lose_the_best():
    # with elites kept, the best cost cannot get worse from one iteration to the next,
    # so the last iteration's best elite is the best sequence seen
    c = dataclasses.replace(SMALL, use_mean_actions=False, shift_elites=False)
    ps = icem.init(c, TASK.action_bounds)
    for seed in range(3):
        _, _, info = _plan(c)(jax.random.key(seed), ps, S0)
        np.testing.assert_allclose(info.elite_costs[0], info.best_cost)


def test_execute_mean_and_cost_aggregation():
    ps = icem.init(SMALL, TASK.action_bounds)
    m = dataclasses.replace(SMALL, execute="mean")
    a, _, info = _plan(m)(jax.random.key(1), ps, S0)
    assert not np.allclose(a, info.best_actions[0])
    np.testing.assert_array_equal(a, info.mean_action)  # what execute="mean" executes
    best, _, info_b = _plan(SMALL)(jax.random.key(1), ps, S0)
    np.testing.assert_array_equal(best, info_b.best_actions[0])
    np.testing.assert_array_equal(info_b.mean_action, a)  # the same mean, whatever is executed
    fin = dataclasses.replace(SMALL, cost_aggregation="final")
    _, _, info = _plan(fin)(jax.random.key(1), ps, S0)
    c, _, _, _ = rollout_open_loop(TASK, S0, info.best_actions)
    np.testing.assert_allclose(info.best_cost, c[-1], rtol=1e-5)


def test_extra_candidates_and_extra_cost():
    c = dataclasses.replace(SMALL, num_extra_candidates=2)
    ps = icem.init(c, TASK.action_bounds)
    # a perfect candidate (full speed toward the target) and an out-of-bounds one
    cand = jnp.stack([jnp.ones((5, 2)), -3.0 * jnp.ones((5, 2))])
    f = jax.jit(lambda k, p, s, x: icem.plan(c, k, p, s, TASK, extra_candidates=x))
    a, _, info = f(jax.random.key(1), ps, S0, cand)
    assert info.extra_candidate_costs.shape == (2,)
    np.testing.assert_allclose(info.best_actions, jnp.ones((5, 2)))
    np.testing.assert_allclose(info.best_cost, info.extra_candidate_costs[0], rtol=1e-6)
    cl, _, _, _ = rollout_open_loop(TASK, S0, -jnp.ones((5, 2)))  # clipped to the bounds
    np.testing.assert_allclose(info.extra_candidate_task_costs[1], cl.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="extra_candidates"):
        icem.plan(c, jax.random.key(0), ps, S0, TASK)

    # a guidance-like term pulling actions to -0.5 outweighs the task cost
    def pull(s, act, s2):
        return 10.0 * jnp.sum((act + 0.5) ** 2)

    ps = icem.init(SMALL, TASK.action_bounds)
    a, _, info = _plan(SMALL, extra_cost=pull)(jax.random.key(1), ps, S0)
    assert np.all(a < 0)
    np.testing.assert_allclose(
        info.best_task_cost + info.best_extra_cost, info.best_cost, rtol=1e-5
    )


def test_nonfinite_rollouts_excluded():
    task = NanPoint(limit=0.0)  # any positive first action diverges
    ps = icem.init(SMALL, task.action_bounds)
    a, ps1, info = _plan(SMALL, task)(jax.random.key(1), ps, S0)
    assert np.isfinite(info.best_cost) and not bool(info.all_nonfinite)
    assert np.all(np.isfinite(ps1.mean)) and np.all(np.isfinite(ps1.elite_costs))
    assert np.all(info.best_actions[:, 0] <= 0.0) and a[0] <= 0.0


def test_all_nonfinite_returns_finite_in_bounds_action():
    task = NanPoint(limit=-2.0)  # everything diverges
    ps = icem.init(SMALL, task.action_bounds)
    a, ps1, info = _plan(SMALL, task)(jax.random.key(1), ps, S0)
    assert bool(info.all_nonfinite) and np.isinf(info.best_cost)
    assert np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0)
    assert np.all(np.isfinite(ps1.mean)) and np.all(np.isinf(ps1.elite_costs))


def test_traced_hyperparams_do_not_recompile():
    ps = icem.init(SMALL, TASK.action_bounds)
    f = _plan(SMALL)
    f(jax.random.key(0), ps, S0)
    ps2 = icem.with_hyperparams(ps, beta=0.5, momentum=0.3, init_std=0.2)
    f(jax.random.key(0), ps2, S0)
    assert f._cache_size() == 1
    r = icem.reset(SMALL, ps2)
    np.testing.assert_allclose(r.std, 0.2)


def test_closed_loop_rollout_replays_open_loop():
    acts, obs, costs, _ = rollout_closed_loop(TASK, S0, lambda s: 5.0 * (0.5 - s.data), 6)
    assert acts.shape == (6, 2) and obs.shape == (6, 2) and np.all(np.abs(acts) <= 1.0)
    c, _, _, _ = rollout_open_loop(TASK, S0, acts)
    np.testing.assert_allclose(c, costs, rtol=1e-6)

"""Guidance cost and the adaptive weight on constructed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import apexjax.envs as envs
from apexjax.configs import ConfigError
from apexjax.guidance import (
    GuidanceConfig,
    adaptive_weight,
    guidance_distance,
    make_guidance_cost,
    normalize_action,
)


@pytest.fixture(scope="module")
def task():
    # the guidance cost compares actions with the policy's: any task will do, and point_mass
    # (pure JAX, action bounds [-1, 1]^2) runs op by op without compiling an MJX model
    return envs.make("point_mass")


def test_normalize_maps_bounds_to_unit_interval():
    low, high = jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])
    np.testing.assert_allclose(normalize_action(low, low, high), [-1, -1])
    np.testing.assert_allclose(normalize_action(high, low, high), [1, 1])
    np.testing.assert_allclose(normalize_action(jnp.array([0.0, 0.5]), low, high), [0, 0])


def test_distance_is_mean_square_of_normalized_difference():
    low, high = jnp.array([-2.0, -1.0]), jnp.array([2.0, 1.0])
    d = guidance_distance(jnp.array([2.0, 0.0]), jnp.array([-2.0, 0.0]), low, high)
    assert float(d) == pytest.approx((2.0**2) / 2)


def test_guidance_cost_zero_when_candidate_equals_policy(task):
    def policy(obs):
        return jnp.tanh(obs[:2])

    state = task.reset(jax.random.key(0))
    cost = make_guidance_cost(task, policy, jnp.float32(3.0))
    a = policy(task.observation(state))
    nxt = task.step(state, a)
    assert float(cost(state, a, nxt)) == 0.0
    assert float(cost(state, a + 0.5, nxt)) == pytest.approx(3.0 * 0.5**2, rel=1e-5)


def test_guidance_cost_is_vmappable_and_weight_is_traced(task):
    state = task.reset(jax.random.key(1))

    @jax.jit
    def f(weight, actions):
        cost = make_guidance_cost(task, lambda o: jnp.zeros(2), weight)
        return jax.vmap(lambda a: cost(state, a, state))(actions)

    actions = jnp.array([[0.0, 0.0], [1.0, -1.0]])
    out = f(jnp.float32(2.0), actions)
    np.testing.assert_allclose(out, [0.0, 2.0])
    out = f(jnp.float32(0.5), actions)
    np.testing.assert_allclose(out, [0.0, 0.5])


def test_guidance_cost_skips_the_policy_at_zero_weight(task):
    """At λ = 0 the policy is not evaluated (its pass at every imagined state is a third of
    the planner's time on half-cheetah): a policy that would give NaN leaves the cost 0,
    also under vmap with λ shared by the batch, while λ > 0 still reads it."""
    state = task.reset(jax.random.key(2))

    def nan_policy(obs):
        return jnp.full(2, jnp.nan)

    @jax.jit
    def f(weight, actions):
        cost = make_guidance_cost(task, nan_policy, weight)
        return jax.vmap(lambda a: cost(state, a, state))(actions)

    actions = jnp.array([[0.0, 0.0], [1.0, -1.0]])
    np.testing.assert_array_equal(f(jnp.float32(0.0), actions), [0.0, 0.0])
    assert np.isnan(np.asarray(f(jnp.float32(1.0), actions))).all()
    hlo = f.lower(jnp.float32(0.0), actions).as_text()
    assert "conditional" in hlo or "case" in hlo  # a branch, not a select of both sides


def test_off_and_fixed():
    assert float(adaptive_weight(GuidanceConfig("off", 5.0), best_task_cost=1.0)) == 0.0
    assert float(adaptive_weight(GuidanceConfig("fixed", 5.0), best_task_cost=1.0)) == 5.0


def test_relative_rises_as_policy_approaches_expert():
    cfg = GuidanceConfig("relative", 2.0, eps=1e-6)
    lam = [
        float(adaptive_weight(cfg, best_task_cost=10.0, policy_task_cost=c))
        for c in (40.0, 20.0, 15.0, 10.0, 5.0)
    ]
    assert lam[0] == 0.0  # worse than the expert by more than its own cost: no guidance
    assert lam[1] == pytest.approx(0.0, abs=1e-5)
    assert lam[2] == pytest.approx(1.0)  # half-way: r = 0.5
    assert lam[3] == pytest.approx(2.0)  # as good as the expert: full weight
    assert lam[4] == pytest.approx(2.0)  # better: clipped at λ0
    # negative costs (running tasks): closer to the expert still means a larger weight
    neg = [
        float(adaptive_weight(cfg, best_task_cost=-100.0, policy_task_cost=c))
        for c in (50.0, -50.0, -100.0)
    ]
    assert neg == pytest.approx([0.0, 1.0, 2.0])


def test_relative_is_zero_for_a_diverged_policy():
    cfg = GuidanceConfig("relative", 1.0)
    assert float(adaptive_weight(cfg, best_task_cost=1.0, policy_task_cost=jnp.inf)) == 0.0
    assert float(adaptive_weight(cfg, best_task_cost=1.0, policy_task_cost=jnp.nan)) == 0.0


def test_progress_uses_the_same_ratio_on_episode_costs():
    # C* = best expert episode cost so far, C_pi = the policy's own evaluation episode cost
    cfg = GuidanceConfig("progress", 1.0, eps=1e-6)
    lam = [
        float(adaptive_weight(cfg, best_task_cost=20.0, policy_task_cost=c))
        for c in (200.0, 40.0, 30.0, 20.0, 10.0)
    ]
    assert lam == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0], abs=1e-5)
    assert float(adaptive_weight(cfg, best_task_cost=20.0, policy_task_cost=jnp.nan)) == 0.0
    assert cfg.per_iteration and not GuidanceConfig("relative").per_iteration
    assert GuidanceConfig().mode == "progress_gap"  # the default


def test_gap_is_the_fraction_of_the_gap_closed_and_ignores_the_cost_offset():
    # C_0 = the untrained policy's episode cost, C* = the best expert's, C_pi = the policy's
    cfg = GuidanceConfig("gap", 0.5, eps=1e-6)

    def lam(pol, best=20.0, ref=100.0):
        return float(
            adaptive_weight(cfg, best_task_cost=best, policy_task_cost=pol, untrained_task_cost=ref)
        )

    assert [lam(c) for c in (120.0, 100.0, 60.0, 20.0, 10.0)] == pytest.approx(
        [0.0, 0.0, 0.25, 0.5, 0.5], abs=1e-5
    )
    # the same episodes with 1000 added to every cost: the same λ (progress would change)
    assert lam(1060.0, 1020.0, 1100.0) == pytest.approx(lam(60.0), abs=1e-5)
    assert lam(jnp.nan) == 0.0
    assert lam(150.0, best=100.0, ref=100.0) == 0.0  # no gap to close: never negative
    assert cfg.per_iteration
    with pytest.raises(ValueError, match="untrained_task_cost"):
        adaptive_weight(cfg, best_task_cost=1.0, policy_task_cost=1.0)


def test_normalized_keeps_guidance_a_fixed_fraction_of_task_cost():
    cfg = GuidanceConfig("normalized", 0.1, eps=1e-9, max_weight=1e6)
    for cost, dist in [(100.0, 4.0), (-3.0, 0.5)]:
        lam = float(adaptive_weight(cfg, best_task_cost=cost, best_distance=dist))
        assert lam * dist == pytest.approx(0.1 * abs(cost), rel=1e-5)


def test_normalized_is_capped_when_the_planner_follows_the_policy():
    # D_best -> 0 (the best candidate IS the policy's) made λ diverge before the cap
    cfg = GuidanceConfig("normalized", 0.1, max_weight=5.0)
    assert float(adaptive_weight(cfg, best_task_cost=100.0, best_distance=0.0)) == 5.0


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="mode"):
        GuidanceConfig("adaptive")
    with pytest.raises(ConfigError, match="weight"):
        GuidanceConfig("fixed", -1.0)
    with pytest.raises(ConfigError, match="eps"):
        GuidanceConfig("fixed", 1.0, eps=0.0)
    with pytest.raises(ConfigError, match="max_weight"):
        GuidanceConfig("normalized", 1.0, max_weight=0.0)
    with pytest.raises(ConfigError, match="warmup_iterations"):
        GuidanceConfig("fixed", 1.0, warmup_iterations=-1)
    with pytest.raises(ConfigError, match="warmup_iterations"):
        GuidanceConfig("fixed", 1.0, warmup_iterations=1.5)


def test_the_per_iteration_weight_rules_live_in_guidance():
    from apexjax.guidance import initial_weight, next_iteration_weight

    prog = GuidanceConfig("progress", 0.5)
    kw = dict(
        best_expert_cost=jnp.float32(10.0),
        policy_cost=jnp.float32(15.0),
        untrained_policy_cost=jnp.float32(40.0),
    )
    # progress: r = 1 - (15 - 10) / 10 = 0.5, times λ0
    assert float(next_iteration_weight(prog, 0.0, **kw)) == pytest.approx(0.25, rel=1e-3)
    # gap: (40 - 15) / (40 - 10)
    gap = GuidanceConfig("gap", 1.0)
    assert float(next_iteration_weight(gap, 0.0, **kw)) == pytest.approx(25 / 30, rel=1e-3)
    # no finite expert episode yet: no guidance
    kw_inf = {**kw, "best_expert_cost": jnp.float32(jnp.inf)}
    assert float(next_iteration_weight(prog, 0.7, **kw_inf)) == 0.0
    # progress_gap: the smaller of the two ratios, (0.5, 25/30) here
    both = GuidanceConfig("progress_gap", 0.5)
    assert both.per_iteration and both.measures_untrained and not prog.measures_untrained
    assert float(next_iteration_weight(both, 0.0, **kw)) == pytest.approx(0.25, rel=1e-3)
    # sparse Fetch: the expert succeeded once (C* = 47), the policy fails (C_pi = C_0 = 50):
    # progress reads 0.94, gap 0 (nothing closed)
    fetch = dict(
        best_expert_cost=jnp.float32(47.0),
        policy_cost=jnp.float32(50.0),
        untrained_policy_cost=jnp.float32(50.0),
    )
    assert float(next_iteration_weight(prog, 0.0, **fetch)) == pytest.approx(
        0.5 * 44 / 47, rel=1e-4
    )
    assert float(next_iteration_weight(both, 0.0, **fetch)) == 0.0
    # both fail every episode (C* = C_pi = C_0): progress gives λ0, progress_gap 0
    fail = {**fetch, "best_expert_cost": jnp.float32(50.0)}
    assert float(next_iteration_weight(prog, 0.0, **fail)) == pytest.approx(0.5)
    assert float(next_iteration_weight(both, 0.0, **fail)) == 0.0
    # the policy has closed the gap and matches the expert: full weight from both readings
    done = {**fetch, "policy_cost": jnp.float32(47.0)}
    assert float(next_iteration_weight(both, 0.0, **done)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="untrained_task_cost"):
        adaptive_weight(both, best_task_cost=1.0, policy_task_cost=1.0)
    # the per-step and fixed modes keep what is stored (unused by them)
    assert float(next_iteration_weight(GuidanceConfig("fixed", 2.0), 0.3, **kw)) == pytest.approx(
        0.3
    )
    # the first step of an episode: stored λ, λ0, or 0; 0 during warm-up
    assert float(initial_weight(prog, 0.4, True)) == pytest.approx(0.4)
    assert float(initial_weight(GuidanceConfig("fixed", 2.0), 0.4, True)) == 2.0
    assert float(initial_weight(GuidanceConfig("relative", 2.0), 0.4, True)) == 0.0
    assert float(initial_weight(prog, 0.4, False)) == 0.0

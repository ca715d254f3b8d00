"""APEX outer iterations: shapes, determinism and imitation on a tiny MJX pendulum problem
(the loop's one test on MJX physics); the guided modes, warm-up and learning to solve a task
on ``point_mass`` (pure JAX, whose training step compiles several times faster)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax import aggregator, policy
from apexjax.configs import ConfigError
from apexjax.guidance import GuidanceConfig
from apexjax.loop import TrainConfig, build_task, init_train_state, make_train_step
from apexjax.planning import icem
from apexjax.planning.icem import ICEMConfig
from apexjax.planning.rollout import rollout_closed_loop

CFG = TrainConfig(
    task="pendulum_swingup",
    backend="mjx",  # the suite's training step on MJX physics (the others run natively)
    num_envs=2,
    episode_length=30,
    sgd_steps=150,
    dataset_capacity=1000,
    planner=ICEMConfig(population=8, elites=2, horizon=8, iterations=2),
    policy=policy.PolicyConfig(hidden=(32, 32), batch_size=64),
    # guidance off: this checks the loop mechanics; the guided modes are checked on
    # point_mass below and, for their effect, by the experiments.
    guidance=GuidanceConfig("off"),
)

# APEX as configured by default (progress_gap guidance, DAgger, policy candidates) on point_mass:
# 2 s episodes, long enough to reach any goal (about 1.5 s at full force) and stop there.
PM = TrainConfig(
    task="point_mass",
    num_envs=2,
    episode_length=20,
    sgd_steps=150,
    dataset_capacity=1000,
    planner=ICEMConfig(population=8, elites=2, horizon=8, iterations=2),
    policy=policy.PolicyConfig(hidden=(32, 32), batch_size=64),
    guidance=GuidanceConfig(weight=0.1),  # the default mode
)
PM_ITERATIONS = 5


@pytest.fixture(scope="module")
def run():
    task = build_task(CFG)
    step = make_train_step(CFG, task)
    s0 = init_train_state(CFG, task)
    s1, m1 = step(s0)
    s2, m2 = step(s1)
    return task, step, s0, s1, s2, m1, m2


@pytest.fixture(scope="module")
def guided():
    """``PM_ITERATIONS`` iterations on point_mass: the step, every state and every metrics."""
    task = build_task(PM)
    step = make_train_step(PM, task)
    states, metrics = [init_train_state(PM, task)], []
    for _ in range(PM_ITERATIONS):
        s, m = step(states[-1])
        states.append(s)
        metrics.append(m)
    return task, step, states, metrics


def _imitation_error(pol, data):
    mask = aggregator.valid_mask(data)
    pred = policy.act(CFG.policy, pol, data.obs)
    err = jnp.mean((pred - data.actions) ** 2, axis=-1)
    return float(jnp.sum(jnp.where(mask, err, 0.0)) / jnp.sum(mask))


def test_one_step_fills_dataset_and_reports_finite_metrics(run):
    task, _, _, s1, s2, m1, m2 = run
    per_iter = 2 * CFG.num_envs * task.episode_length  # expert + DAgger episodes
    assert int(s1.dataset.size) == per_iter
    assert int(s2.dataset.size) == 2 * per_iter
    assert int(s2.iteration) == 2
    src = np.asarray(s1.dataset.source[:per_iter])
    assert set(src.tolist()) == {aggregator.SOURCE_EXPERT, aggregator.SOURCE_POLICY}
    for m in (m1, m2):
        for k in ("expert_return", "dagger_return", "policy_return", "loss", "lambda_mean"):
            assert np.isfinite(float(m[k])), k
        # guidance off: no step of either phase is guided, now or next iteration
        for k in ("lambda_mean", "lambda_last", "next_lambda"):
            assert float(m[k]) == 0.0, k
        # budget: every control step of the 2 x num_envs episodes is one plan, and each plan
        # simulates the planner's own count (population sizes x horizon, policy candidates in)
        plans = 2 * CFG.num_envs * task.episode_length
        per_plan = icem.simulated_per_step(CFG.expert_planner)
        assert float(m["simulated_steps"]) == plans * per_plan


def test_training_moves_the_policy_toward_the_expert_labels(run):
    _, _, s0, _s1, s2, _, _ = run
    # the same aggregated data, judged by the untrained and by the trained policy
    before = _imitation_error(s0.policy, s2.dataset)
    after = _imitation_error(s2.policy, s2.dataset)
    assert after < 0.5 * before


def test_same_seed_gives_identical_metrics(run):
    task, step, _s0, _, _, m1, _ = run
    _, again = step(init_train_state(CFG, task))
    for k in m1:
        assert float(again[k]) == float(m1[k]), k


def test_dataset_window_draws_as_before_until_it_drops_rows(run):
    task, _, s0, s1, s2, _, _ = run
    same = jax.tree.leaves((s1.policy, s2.policy))
    wide = make_train_step(dataclasses.replace(CFG, dataset_window=2), task)
    w1 = wide(s0)[0]
    for a, b in zip(jax.tree.leaves((w1.policy, wide(w1)[0].policy)), same, strict=True):
        np.testing.assert_array_equal(a, b)  # 2 iterations: every row in the window
    narrow = make_train_step(dataclasses.replace(CFG, dataset_window=1), task)
    n1 = narrow(s0)[0]
    for a, b in zip(jax.tree.leaves(n1.policy), jax.tree.leaves(s1.policy), strict=True):
        np.testing.assert_array_equal(a, b)  # iteration 1: its own rows are all there is
    n2 = narrow(n1)[0]  # iteration 2 fits its own rows only: another policy, the same data
    np.testing.assert_array_equal(n2.dataset.obs, s2.dataset.obs)
    assert not np.array_equal(n2.policy.params[0]["W"], s2.policy.params[0]["W"])
    with pytest.raises(ConfigError, match="dataset_window"):
        TrainConfig(dataset_window=-1)


def test_config_errors():
    with pytest.raises(ConfigError, match="num_envs"):
        TrainConfig(num_envs=0)
    with pytest.raises(ConfigError, match="relative"):
        TrainConfig(policy_candidates=0, guidance=GuidanceConfig("relative"))
    with pytest.raises(ConfigError, match="progress"):
        TrainConfig(expert_data=False)  # progress compares with the expert's episodes
    with pytest.raises(ConfigError, match="both"):
        TrainConfig(expert_data=False, dagger=False)
    # the expert's extra candidates are derived from policy_candidates, never rewritten
    c = TrainConfig(policy_candidates=3)
    assert c.expert_planner.num_extra_candidates == 3 and c.planner.num_extra_candidates == 0
    with pytest.raises(ConfigError, match="num_extra_candidates"):
        TrainConfig(policy_candidates=1, planner=ICEMConfig(num_extra_candidates=2))


def test_step_is_one_compiled_function(run):
    # ahead-of-time compiled (as apexjax.driver.fit runs it), the step is the same program:
    # the same state structure out as in, the same bits as the jitted call
    _, step, s0, s1, _, m1, _ = run
    compiled = step.lower(s0).compile()
    c1, cm1 = compiled(s0)
    assert jax.tree_util.tree_structure(c1) == jax.tree_util.tree_structure(s0)
    for a, b in zip(jax.tree.leaves(c1), jax.tree.leaves(s1), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert {k: float(v) for k, v in cm1.items()} == {k: float(v) for k, v in m1.items()}


def _check_first_guided_iteration(s1, m, weight):
    """λ of a guided first iteration, and the best expert so far (the formulas themselves
    are tested in test_guidance.py)."""
    lam = float(m["lambda_mean"])
    assert np.isfinite(lam) and lam >= 0.0
    assert lam <= weight + 1e-6  # no mode exceeds λ0
    best = float(m["best_expert_return"])
    assert best == pytest.approx(float(m["expert_return"]))  # the first expert is the best
    assert float(s1.best_expert_cost) == pytest.approx(-best)
    return lam


def test_relative_guided_step_runs_and_logs_lambda():
    cfg = dataclasses.replace(
        PM, guidance=GuidanceConfig("relative", 0.1), episode_length=8, sgd_steps=5, dagger=False
    )
    task = build_task(cfg)
    step = make_train_step(cfg, task)
    s1, m = step(init_train_state(cfg, task))
    _check_first_guided_iteration(s1, m, 0.1)


def test_progress_guided_step_runs_and_logs_lambda(guided):
    _, step, states, metrics = guided
    s1, m = states[1], metrics[0]
    lam = _check_first_guided_iteration(s1, m, 0.1)
    assert lam == 0.0  # the first iteration is unguided (no policy evaluation yet)
    assert 0.0 <= float(m["next_lambda"]) <= 0.1 + 1e-6
    assert float(s1.guidance_weight) == float(m["next_lambda"])
    # the default rule: 0.1 x the smaller of the progress and gap ratios, C_0 measured once
    c0 = float(s1.untrained_policy_cost)
    assert np.isfinite(c0) and float(m["untrained_policy_return"]) == pytest.approx(-c0)
    best, pol = -float(m["best_expert_return"]), -float(m["policy_return"])
    r_progress = np.clip(1 - (pol - best) / (abs(best) + 1e-3), 0, 1)
    r_gap = np.clip((c0 - pol) / max(c0 - best, 1e-3), 0, 1)
    assert float(m["next_lambda"]) == pytest.approx(0.1 * min(r_progress, r_gap), abs=1e-6)
    assert float(states[2].untrained_policy_cost) == c0
    # a forced λ in the state is what the next iteration's episodes use
    forced = s1.replace(guidance_weight=jnp.float32(0.07))
    s2, m2 = step(forced)
    assert float(m2["lambda_mean"]) == pytest.approx(0.07)
    assert float(s2.best_expert_cost) <= float(s1.best_expert_cost)
    # and unforced, λ follows the policy's progress: on at some later iteration
    assert max(float(x["lambda_mean"]) for x in metrics[1:]) > 0.0


def _policy_alone(task, pol, key, episodes=16):
    """Mean return and success rate of the policy alone on ``episodes`` fresh episodes."""

    def one(k):
        pi = lambda s: policy.act(PM.policy, pol, task.observation(s))  # noqa: E731
        _, _, costs, final = rollout_closed_loop(task, task.reset(k), pi, task.episode_length)
        return -jnp.sum(costs), task.success(final)

    returns, success = jax.vmap(one)(jax.random.split(key, episodes))
    return jnp.mean(returns), jnp.mean(success.astype(jnp.float32))


def test_apex_iterations_teach_the_policy_to_reach_the_goal(guided):
    # Untrained, the policy barely moves (-7.5: about the start distance at every step);
    # the expert reaches every goal (-2.5). After 5 iterations the policy alone measured
    # -2.6 with every episode a success, on 16 episodes it never trained on.
    task, _, states, metrics = guided
    evaluate = jax.jit(lambda pol: _policy_alone(task, pol, jax.random.key(7)))
    r0, ok0 = (float(x) for x in evaluate(states[0].policy))
    r, ok = (float(x) for x in evaluate(states[-1].policy))
    expert = float(np.mean([float(m["expert_return"]) for m in metrics]))
    assert float(np.mean([float(m["expert_success"]) for m in metrics])) >= 0.9
    assert ok0 == 0.0 and ok >= 0.75, (ok0, ok)
    assert r > r0 + 0.75 * (expert - r0), (r0, r, expert)  # three quarters of the way


def test_guidance_warmup_keeps_lambda_zero():
    cfg = dataclasses.replace(
        PM,
        guidance=GuidanceConfig("fixed", 0.5, warmup_iterations=1),
        episode_length=6,
        sgd_steps=2,
        dagger=False,
    )
    task = build_task(cfg)
    step = make_train_step(cfg, task)
    s1, m1 = step(init_train_state(cfg, task))
    _, m2 = step(s1)
    assert float(m1["lambda_mean"]) == 0.0
    assert float(m2["lambda_mean"]) == pytest.approx(0.5)


def test_gap_measures_the_untrained_policy_once_and_sets_lambda_from_it():
    cfg = dataclasses.replace(
        PM, guidance=GuidanceConfig("gap", 0.1), episode_length=8, sgd_steps=20
    )
    task = build_task(cfg)
    step = make_train_step(cfg, task)
    s0 = init_train_state(cfg, task)
    assert np.isnan(float(s0.untrained_policy_cost))
    s1, m1 = step(s0)
    c0 = float(s1.untrained_policy_cost)
    assert np.isfinite(c0) and float(m1["untrained_policy_return"]) == pytest.approx(-c0)
    assert float(m1["lambda_mean"]) == 0.0  # the first iteration is unguided
    expected = 0.1 * np.clip(
        (c0 + float(m1["policy_return"])) / max(c0 + float(m1["best_expert_return"]), 1e-3), 0, 1
    )
    assert float(m1["next_lambda"]) == pytest.approx(expected, abs=1e-5)
    s2, m2 = step(s1)
    assert float(s2.untrained_policy_cost) == c0  # measured once
    assert float(m2["lambda_mean"]) == pytest.approx(float(m1["next_lambda"]))

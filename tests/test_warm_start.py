"""The expert's planner warm-started from the policy (``TrainConfig.warm_start="policy"``):
the config's checks, and that it samples around the policy's own rollout once
``warm_start_after`` iterations have passed (and around its own shifted mean before)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import tiny_config, tiny_planner

from apexjax import policy
from apexjax.configs import ConfigError
from apexjax.episodes import episode_fns
from apexjax.guidance import GuidanceConfig
from apexjax.loop import build_task, init_train_state, make_train_step


def test_config_checks():
    with pytest.raises(ConfigError, match="warm_start"):
        tiny_config(warm_start="elites")
    with pytest.raises(ConfigError, match="warm_start_after"):
        tiny_config(warm_start_after=-1)
    assert tiny_config().warm_start == "planner"  # iCEM's own, unless asked


def _pushing_policy(state, push):
    """The untrained policy with its output bias set: it pushes with ``tanh(push)`` on every
    axis (far from mid-range, where an untrained policy and iCEM's first mean sit)."""
    params = list(state.params)
    params[-1] = dict(params[-1], W=jnp.zeros_like(params[-1]["W"]))
    params[-1]["b"] = jnp.full_like(params[-1]["b"], push)
    return state.replace(params=params)


def _narrow_config(**overrides):
    """point_mass with warm_start="policy" and a planner too narrow to leave its sampling
    mean (init_std 1e-6, no momentum), no candidates, no guidance."""
    planner = dataclasses.replace(tiny_planner("point_mass"), init_std=1e-6, momentum=0.0)
    return tiny_config(
        planner=planner,
        warm_start="policy",
        policy_candidates=0,
        guidance=GuidanceConfig("off"),
        **overrides,
    )


@pytest.mark.parametrize("warm", [True, False])
def test_expert_samples_around_the_policy_rollout(warm):
    """With a planner too narrow to leave its sampling mean (init_std 1e-6, no momentum),
    the expert executes its mean's first action: the policy's action with the policy's warm
    start, iCEM's own mean (mid-range at the start, 0 here) otherwise."""
    config = _narrow_config()
    task = build_task(config)
    pol = _pushing_policy(init_train_state(config, task).policy, 0.5)
    ep = episode_fns(config, task).expert(pol, jax.random.key(0), False, 0.0, True, warm)
    want = np.tanh(0.5) if warm else 0.0
    np.testing.assert_allclose(np.asarray(ep.actions), want, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ep.labels), want, atol=1e-4)  # executed labels


def test_the_step_waits_warm_start_after_iterations():
    """The training step's first iteration (warm_start_after=1) plans around iCEM's own mean;
    from the second on, around the policy: with the same narrow planner, the expert's rows
    of iteration 1 are mid-range and those of iteration 2 the (trained) policy's actions."""
    config = _narrow_config(iterations=2, dagger=False)
    task = build_task(config)
    step = make_train_step(config, task)
    s1, _ = step(init_train_state(config, task))
    n = config.num_envs * task.episode_length
    np.testing.assert_allclose(np.asarray(s1.dataset.actions[:n]), 0.0, atol=1e-4)
    s2, _ = step(s1)
    obs = s2.dataset.obs[n : 2 * n]
    expected = policy.act(config.policy, s1.policy, obs)  # the policy the second step used
    np.testing.assert_allclose(np.asarray(s2.dataset.actions[n : 2 * n]), expected, atol=1e-4)
    assert float(jnp.abs(expected).max()) > 1e-3  # not mid-range: the test can tell

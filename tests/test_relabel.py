"""DAgger relabelling, sequential (warm-started along the trajectory) vs batched (all
visited states labelled at once): same data layout, labels of the same quality."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax import aggregator, policy
from apexjax.configs import ConfigError
from apexjax.guidance import GuidanceConfig
from apexjax.loop import TrainConfig, build_task, init_train_state, make_train_step
from apexjax.planning.icem import ICEMConfig

BASE = TrainConfig(
    task="point_mass",
    num_envs=2,
    episode_length=20,
    sgd_steps=100,
    dataset_capacity=400,
    planner=ICEMConfig(population=16, elites=4, horizon=8, iterations=2),
    policy=policy.PolicyConfig(hidden=(32, 32), batch_size=64),
    guidance=GuidanceConfig("progress", 0.1),
)


def test_batched_relabel_needs_a_per_iteration_weight():
    with pytest.raises(ConfigError, match="relabel"):
        dataclasses.replace(BASE, relabel="batched", guidance=GuidanceConfig("relative"))
    with pytest.raises(ConfigError, match="relabel"):
        dataclasses.replace(BASE, relabel="parallel")
    for mode in ("off", "fixed", "progress"):  # one λ per iteration: allowed
        dataclasses.replace(BASE, relabel="batched", guidance=GuidanceConfig(mode))


@pytest.fixture(scope="module")
def both():
    out = {}
    for mode in ("sequential", "batched"):
        cfg = dataclasses.replace(BASE, relabel=mode)
        task = build_task(cfg)
        step = make_train_step(cfg, task)
        s0 = init_train_state(cfg, task)
        s1, m1 = step(s0)
        out[mode] = (task, s0, s1, m1)
    return out


def test_batched_relabel_fills_the_same_rows(both):
    (task, _, s_seq, m_seq), (_, _, s_bat, m_bat) = both["sequential"], both["batched"]
    per_phase = BASE.num_envs * task.episode_length
    for s in (s_seq, s_bat):
        assert int(s.dataset.size) == 2 * per_phase
        src = np.asarray(s.dataset.source[: 2 * per_phase])
        assert (src[:per_phase] == aggregator.SOURCE_EXPERT).all()
        assert (src[per_phase:] == aggregator.SOURCE_POLICY).all()
    # the expert phase is identical; the policy acts alike in both DAgger phases (same
    # keys, same untrained policy), so the visited states agree and only labels differ
    assert float(m_seq["expert_return"]) == pytest.approx(float(m_bat["expert_return"]))
    assert float(m_seq["dagger_return"]) == pytest.approx(float(m_bat["dagger_return"]), rel=1e-5)
    np.testing.assert_allclose(
        np.asarray(s_seq.dataset.obs[per_phase : 2 * per_phase]),
        np.asarray(s_bat.dataset.obs[per_phase : 2 * per_phase]),
        rtol=1e-5,
        atol=1e-5,
    )
    assert float(m_seq["simulated_steps"]) == float(m_bat["simulated_steps"])


def test_batched_labels_are_as_good_as_sequential_ones(both):
    # the same visited states (see above), labelled both ways
    task, _, s_seq, _ = both["sequential"]
    s_bat = both["batched"][2]
    n = BASE.num_envs * task.episode_length
    sl = slice(n, 2 * n)
    lab_seq = jnp.asarray(s_seq.dataset.actions[sl])
    lab_bat = jnp.asarray(s_bat.dataset.actions[sl])
    rand = jax.random.uniform(
        jax.random.key(0), lab_seq.shape, minval=task.action_low, maxval=task.action_high
    )

    # agreement: both planners steer the same way far more often than a random action does
    def cos(a, b):
        return jnp.sum(a * b, -1) / (
            jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1) + 1e-9
        )

    agree = float(jnp.mean(cos(lab_seq, lab_bat)))
    chance = float(jnp.mean(cos(lab_seq, rand)))
    assert agree > 0.5 and agree > chance + 0.3, (agree, chance)


def test_mean_labels_keep_the_expert_trajectory(both):
    """``label="mean"``: the expert still executes its best sample (same states, same
    return, same keys), only the stored targets change, to the planner's mean."""
    task, _, s_exec, m_exec = both["sequential"]
    cfg = dataclasses.replace(BASE, label="mean")
    s_mean, m_mean = make_train_step(cfg, build_task(cfg))(init_train_state(cfg, task))
    n = BASE.num_envs * task.episode_length
    assert float(m_mean["expert_return"]) == float(m_exec["expert_return"])
    np.testing.assert_array_equal(
        np.asarray(s_mean.dataset.obs[:n]), np.asarray(s_exec.dataset.obs[:n])
    )
    lab_m, lab_e = np.asarray(s_mean.dataset.actions[:n]), np.asarray(s_exec.dataset.actions[:n])
    assert not np.allclose(lab_m, lab_e)
    # the mean is the smoother target: consecutive labels change less than the best samples'
    steps = np.diff(lab_m.reshape(BASE.num_envs, task.episode_length, -1), axis=1)
    steps_e = np.diff(lab_e.reshape(BASE.num_envs, task.episode_length, -1), axis=1)
    assert np.abs(steps).mean() < np.abs(steps_e).mean()
    with pytest.raises(ConfigError, match=r"TrainConfig\.label"):
        dataclasses.replace(BASE, label="best")

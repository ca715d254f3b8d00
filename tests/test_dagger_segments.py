"""DAgger in segments that start at states of the expert's episodes
(``TrainConfig.dagger_segment``): the config's checks, the default left as it was, and each
segment starting exactly at a state the expert visited, on pure JAX and on native physics.
With dagger_segment=0 the step is the plain one (its keys and order are kept: the other
tests of the loop, resume included, run it)."""

import dataclasses

import numpy as np
import pytest
from _tiny import tiny_config

from apexjax import aggregator
from apexjax.configs import ConfigError
from apexjax.loop import build_task, init_train_state, make_train_step

E, T, L = 2, 6, 2


def test_config_checks():
    with pytest.raises(ConfigError, match="dagger_segment"):
        tiny_config(dagger_segment=-1)
    with pytest.raises(ConfigError, match="needs dagger=True and expert_data=True"):
        tiny_config(dagger_segment=2, expert_data=False)
    with pytest.raises(ConfigError, match="needs dagger=True and expert_data=True"):
        tiny_config(dagger_segment=2, dagger=False)
    with pytest.raises(ConfigError, match="relabel='sequential' only"):
        tiny_config(dagger_segment=2, relabel="batched")
    config = tiny_config(dagger_segment=T + 1)
    with pytest.raises(ConfigError, match="longer than the 6-step episode"):
        make_train_step(config, build_task(config))
    with pytest.raises(ConfigError, match="dagger_segment_starts: expected an int >= 0"):
        tiny_config(dagger_segment=2, dagger_segment_starts=-1)
    with pytest.raises(ConfigError, match="needs dagger_segment > 0"):
        tiny_config(dagger_segment_starts=2)
    config = tiny_config(dagger_segment=2, dagger_segment_starts=T + 1)
    with pytest.raises(ConfigError, match="dagger_segment_starts: 7 is longer than the 6-step"):
        make_train_step(config, build_task(config))


def _rows(config):
    task = build_task(config)
    state, metrics = make_train_step(config, task)(init_train_state(config, task))
    data = state.dataset
    n = int(data.size)
    obs = np.asarray(data.obs[:n])
    source = np.asarray(data.source[:n])
    return obs[source == aggregator.SOURCE_EXPERT], obs[source == aggregator.SOURCE_POLICY], metrics


@pytest.mark.parametrize(
    "task", ["point_mass", pytest.param("pendulum_swingup", id="native-pendulum")]
)
def test_segments_start_at_states_the_expert_visited(task):
    plain = tiny_config(task)
    segmented = dataclasses.replace(plain, dagger_segment=L)
    assert plain.backend == "auto"  # native physics for the MuJoCo task on this CPU
    expert, dagger, metrics = _rows(segmented)
    assert expert.shape == dagger.shape == (E * T, build_task(plain).observation_dim)
    # every segment's first observation is one the expert saw (the exact bits of its
    # state restored)
    for i in range(0, E * T, L):  # rows are episode-major: every L-th one starts a segment
        assert np.any(np.all(expert == dagger[i], axis=1)), f"row {i} is no expert state"
    assert np.isfinite(metrics["dagger_return"]) and np.isfinite(metrics["loss"])
    if task == "point_mass":
        # the expert's episodes are those of the plain run (same keys, run first), and the
        # segments are not simply its DAgger states; checked once, on the pure-JAX task (a
        # native training step is compiled afresh for every program, so a second one here
        # would cost the suite a compile for a property of the loop, not of the physics)
        plain_expert, plain_dagger, _ = _rows(plain)
        np.testing.assert_array_equal(expert, plain_expert)
        assert not np.array_equal(dagger, plain_dagger)


def test_segments_start_within_the_expert_episodes_first_steps():
    """``dagger_segment_starts=S``: every segment starts at a state of the first S steps of
    an expert episode (pure JAX; the draw is the same code on every backend)."""
    S = 2
    config = tiny_config("point_mass", dagger_segment=L, dagger_segment_starts=S)
    expert, dagger, metrics = _rows(config)
    early = expert.reshape(E, T, -1)[:, :S].reshape(E * S, -1)  # rows are episode-major
    for i in range(0, E * T, L):
        assert np.any(np.all(early == dagger[i], axis=1)), f"row {i}: not an early expert state"
    assert np.isfinite(metrics["loss"])

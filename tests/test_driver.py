"""The one outer loop (apexjax.driver.fit): no disk, continues from a state's own count,
stops when the callback says so, runs seeds side by side, compiles a run's step once."""

import dataclasses

import jax
import numpy as np
import pytest
from _tiny import tiny_config

from apexjax.configs import ConfigError
from apexjax.driver import fit, init_states
from apexjax.loop import build_task

CFG = tiny_config(iterations=3, episode_length=10, sgd_steps=20, dataset_capacity=200)


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def straight():
    task = build_task(CFG)
    return task, fit(CFG, task=task)


def test_fit_trains_to_the_target_and_returns_the_state(straight):
    _, res = straight
    assert int(res.state.iteration) == 3
    assert [r["iteration"] for r in res.history] == [1, 2, 3]
    assert all(r["seconds"] > 0 and np.isfinite(r["policy_return"]) for r in res.history)
    assert res.compile_seconds > 0 and res.train_seconds > 0


def test_a_state_continues_bit_for_bit_and_the_step_compiles_once(straight):
    task, res = straight
    part = fit(CFG, task=task, iterations=1)
    assert part.compile_seconds == 0.0  # the same config, task and shapes: compiled before
    rest = fit(CFG, part.state, task=task)  # from the state's own count to the target
    assert [r["iteration"] for r in rest.history] == [2, 3]
    _same(rest.state, res.state)
    assert rest.history[-1] == {**res.history[-1], "seconds": rest.history[-1]["seconds"]}
    # nothing left to do: no compile, no rows
    done = fit(CFG, rest.state, task=task)
    assert done.history == [] and done.compile_seconds == 0.0


def test_the_callback_sees_every_iteration_and_can_stop_early(straight):
    task, _ = straight
    seen = []

    def cb(it, row, state):
        seen.append((it, int(state.iteration), row["iteration"]))
        return it == 2

    res = fit(CFG, task=task, callback=cb)
    assert seen == [(1, 1, 1), (2, 2, 2)] and int(res.state.iteration) == 2


def test_seeds_side_by_side_equal_each_seed_alone(straight):
    task, res = straight  # seed 0, alone
    cfg1 = dataclasses.replace(CFG, seed=1)
    alone1 = fit(cfg1, task=task, iterations=2)
    both = fit(CFG, task=task, seeds=[0, 1], iterations=2)
    assert np.asarray(both.state.iteration).tolist() == [2, 2]
    r = both.history[-1]
    assert len(r["policy_return"]) == 2 and r["iteration"] == 2
    np.testing.assert_allclose(r["loss"][1], alone1.history[-1]["loss"], rtol=1e-4)
    np.testing.assert_allclose(r["expert_return"][0], res.history[1]["expert_return"], rtol=1e-4)


def test_bad_arguments_are_config_errors(straight):
    task, res = straight
    with pytest.raises(ConfigError, match="iterations must be an int >= 0"):
        fit(CFG, task=task, iterations=-1)
    with pytest.raises(ConfigError, match="below the 3 iterations"):
        fit(CFG, res.state, task=task, iterations=2)
    with pytest.raises(ConfigError, match="seeds must differ"):
        fit(CFG, task=task, seeds=[1, 1])
    with pytest.raises(ConfigError, match="needs seeds="):
        fit(CFG, init_states(CFG, task, [0, 1]), task=task)
    with pytest.raises(ConfigError, match="holds 1 stacked seed"):
        fit(CFG, init_states(CFG, task, [0]), task=task, seeds=[0, 1])

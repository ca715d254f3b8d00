"""Brax and Playground envs as apexjax tasks: reset/step, cost, copies, errors."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax.configs import ConfigError
from apexjax.envs import make
from apexjax.envs.adapters import flatten_observation

BATCH = 3


def _check_task(task, obs_dim):
    """Reset and step a batch under jit + vmap (one compiled step, called repeatedly)."""
    a = task.action_dim
    reset = jax.jit(jax.vmap(task.reset))
    step = jax.jit(jax.vmap(task.step))
    cost = jax.jit(jax.vmap(task.cost))
    observe = jax.jit(jax.vmap(task.observation))
    keys = jax.random.split(jax.random.key(0), BATCH)
    a0 = jnp.linspace(-0.9, 0.9, BATCH * a).reshape(BATCH, a)
    a1 = -a0
    s0 = reset(keys)
    s1 = step(s0, a0)
    s2 = step(s1, a1)
    obs = observe(s2)
    assert obs.shape == (BATCH, obs_dim)
    assert task.observation_dim == obs_dim
    np.testing.assert_array_equal(s2.t, np.full(BATCH, 2))
    # the wrapped env's own state is carried, and cost is minus its step reward
    assert type(s1.data) is type(jax.eval_shape(task.env.reset, jax.random.key(0)))
    np.testing.assert_array_equal(cost(s0, a0, s1), -np.asarray(s1.data.reward))
    assert np.all(jax.jit(jax.vmap(task.is_finite))(s2))
    assert not np.any(jax.jit(jax.vmap(task.success))(s2))
    # stepping twice from a copy reproduces stepping twice from the original exactly
    copy = jax.tree_util.tree_map(jnp.copy, s1)
    from_copy = step(step(copy, a1), a0)
    from_orig = step(s2, a0)
    for x, y in zip(
        jax.tree_util.tree_leaves(from_copy), jax.tree_util.tree_leaves(from_orig), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    # different actions and keys give different states across the batch
    assert not np.allclose(obs[0], obs[-1])
    np.testing.assert_array_equal(task.action_low, -np.ones(a, np.float32))
    np.testing.assert_array_equal(task.action_high, np.ones(a, np.float32))
    # step is type-stable (dtypes and weak types), so it can be a scan carry
    one = jax.eval_shape(task.reset, jax.random.key(0))
    nxt = jax.eval_shape(task.step, one, jnp.zeros((a,)))
    assert jax.tree_util.tree_structure(one) == jax.tree_util.tree_structure(nxt)
    for x, y in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(nxt), strict=True):
        assert (x.shape, x.dtype, x.weak_type) == (y.shape, y.dtype, y.weak_type)
    # a wrong action shape names the task (shapes only: an eager reset of an MJX env would
    # run its start-up op by op, tens of seconds)
    with pytest.raises(ValueError, match=task.name):
        jax.eval_shape(task.step, one, jnp.zeros((a + 1,)))


# ------------------------------------------------------------------------- brax
@pytest.fixture(scope="module")
def brax_task():
    pytest.importorskip("brax", reason="brax is not installed")
    return make("brax:inverted_pendulum")


def test_brax_task_steps_like_the_env(brax_task):
    assert brax_task.name == "brax:inverted_pendulum"
    assert brax_task.episode_length == 1000
    assert brax_task.frame_skip == 2
    assert brax_task.dt == pytest.approx(brax_task.env.dt)
    assert brax_task.env.backend == "mjx"
    _check_task(brax_task, obs_dim=4)


def test_brax_cost_and_success_fns_replace_the_defaults():
    pytest.importorskip("brax", reason="brax is not installed")
    task = make(
        "brax:inverted_pendulum",
        episode_length=50,
        cost_fn=lambda s, a, n: jnp.sum(a**2),
        success_fn=lambda s: s.t >= 1,
    )
    assert task.episode_length == 50 and task.has_success
    # the given functions read only the action and the step count: a zero state will do
    shapes = jax.eval_shape(task.reset, jax.random.key(0))
    s0 = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    s1 = s0.replace(t=s0.t + 1)
    a = jnp.array([0.5])
    assert float(task.cost(s0, a, s1)) == pytest.approx(0.25)
    assert bool(task.success(s1)) and not bool(task.success(s0))


def test_unknown_brax_env_lists_the_known_ones():
    pytest.importorskip("brax", reason="brax is not installed")
    with pytest.raises(ConfigError, match="inverted_pendulum") as info:
        make("brax:nope")
    assert "'nope'" in str(info.value)


# ------------------------------------------------------------------- playground
@pytest.fixture(scope="module")
def playground_task():
    pytest.importorskip(
        "mujoco_playground", reason="the playground extra (mujoco_playground) is not installed"
    )
    return make("playground:CartpoleSwingup")


def test_playground_task_steps_like_the_env(playground_task):
    task = playground_task
    assert task.name == "playground:CartpoleSwingup"
    assert task.episode_length == 1000
    assert task.frame_skip == task.env.n_substeps
    assert task.dt == pytest.approx(task.env.dt)
    _check_task(task, obs_dim=5)


def test_unknown_playground_env_and_override_raise_config_error():
    pytest.importorskip(
        "mujoco_playground", reason="the playground extra (mujoco_playground) is not installed"
    )
    with pytest.raises(ConfigError, match="CartpoleSwingup"):
        make("playground:nope")
    with pytest.raises(ConfigError, match="not_a_field"):
        make("playground:CartpoleSwingup", not_a_field=1)


# ---------------------------------------------------------------------- generic
def test_dict_observations_use_state_entry_or_sorted_leaves():
    obs = {"state": jnp.arange(3.0), "pixels": jnp.zeros((2, 2))}
    np.testing.assert_array_equal(flatten_observation(obs), jnp.arange(3.0))
    obs = {"b": jnp.array([3.0]), "a": jnp.array([[1.0, 2.0]])}
    np.testing.assert_array_equal(flatten_observation(obs), jnp.array([1.0, 2.0, 3.0]))


def test_importing_apexjax_does_not_import_brax_or_playground():
    code = (
        "import sys, apexjax, apexjax.envs, apexjax.envs.adapters; "
        "bad = [m for m in ('brax', 'mujoco_playground') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_adapter_names_have_no_config_class():
    from apexjax.envs import config_class

    with pytest.raises(ConfigError, match="episode_length"):
        config_class("brax:inverted_pendulum")


def test_bad_brax_argument_raises_config_error():
    pytest.importorskip("brax", reason="brax is not installed")
    with pytest.raises(ConfigError, match="brax:inverted_pendulum"):
        make("brax:inverted_pendulum", no_such_argument=1)

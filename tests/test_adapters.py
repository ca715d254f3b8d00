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


def test_importing_apexjax_does_not_import_brax_playground_or_mjx():
    # MJX takes seconds to import (it brings in MuJoCo Warp): a native task never loads it
    code = (
        "import sys, apexjax, apexjax.envs, apexjax.envs.adapters, apexjax.cli; "
        "apexjax.envs.make('door', backend='native'); "
        "bad = [m for m in ('brax', 'mujoco_playground', 'mujoco.mjx') if m in sys.modules]; "
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


# ----------------------------------------------------------------- command line
def test_cli_plans_a_brax_task(tmp_path, capsys):
    """``apexjax plan`` on an adapter task: two control steps of a tiny planner (one MJX
    compile of Brax's inverted pendulum, the cheapest adapter env)."""
    pytest.importorskip("brax", reason="brax is not installed")
    import json

    from apexjax import cli

    out = tmp_path / "plan.json"
    argv = ["plan", "--task", "brax:inverted_pendulum", "--episodes", "1", "--steps", "2"]
    argv += ["--chunk", "2", "--out", str(out)]
    for item in ("population=8", "elites=2", "horizon=2", "iterations=1"):
        argv += ["--set", item]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "brax:inverted_pendulum" and len(result["returns"]) == 1
    assert "mjx physics" in capsys.readouterr().err


def test_cli_adapter_tasks_take_no_task_overrides(capsys):
    from apexjax import cli

    assert cli.main(["plan", "--task", "brax:inverted_pendulum", "--task-set", "x=1"]) == 2
    err = capsys.readouterr().err
    assert "--task-set" in err and "brax:inverted_pendulum" in err and "no task overrides" in err
    argv = ["train", "--task", "playground:CartpoleSwingup", "--set", "task_options=x=1"]
    assert cli.main(argv) == 2
    assert "task_options" in capsys.readouterr().err


class _StopError(Exception):
    pass


def test_cli_trains_a_brax_task_up_to_the_compile(tmp_path, monkeypatch, capsys):
    """``apexjax train`` accepts an adapter task and hands ``train`` a config whose task
    builds (the training itself is the library's, tested elsewhere; an MJX training step
    takes minutes to compile on a CPU)."""
    pytest.importorskip("brax", reason="brax is not installed")
    import apexjax.train
    from apexjax import cli
    from apexjax.loop import build_task

    seen = {}

    def train(config, run_dir, **kw):
        seen["task"] = build_task(config)
        raise _StopError

    monkeypatch.setattr(apexjax.train, "train", train)
    argv = ["train", "--task", "brax:inverted_pendulum", "--run-dir", str(tmp_path / "r")]
    with pytest.raises(_StopError):
        cli.main([*argv, "--set", "episode_length=7"])
    assert seen["task"].name == "brax:inverted_pendulum"
    assert seen["task"].episode_length == 7
    assert "(mjx physics)" in capsys.readouterr().err


def test_cli_bench_on_an_adapter_skips_the_planner_section(tmp_path, monkeypatch, capsys):
    import json

    import apexjax.bench.compile
    import apexjax.bench.policy
    from apexjax import cli
    from apexjax.bench import Section

    ran = []

    def section(name):
        def run(task, **kw):
            ran.append((name, task))
            return Section(title=name, figures=[])

        return run

    monkeypatch.setattr(apexjax.bench.policy, "run", section("policy"))
    monkeypatch.setattr(apexjax.bench.compile, "run", section("compile"))
    task = "brax:inverted_pendulum"
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--task", task, "--quick", "--out", str(out)]) == 0
    assert ran == [("policy", task), ("compile", task)]
    assert "no planner section" in capsys.readouterr().err
    assert [s["title"] for s in json.loads(out.read_text())["sections"]] == ["policy", "compile"]
    # asked for by name, the planner section is one clear error before anything runs
    assert cli.main(["bench", "--task", task, "--sections", "planner"]) == 2
    assert "NumPy twins" in capsys.readouterr().err


def test_missing_menagerie_is_one_clear_error(tmp_path, monkeypatch):
    """A Playground env that needs MuJoCo Menagerie, where Playground's ``git clone``
    fails (no network here) or git is missing: a ConfigError that says where the checkout
    goes, not a CalledProcessError."""
    pytest.importorskip(
        "mujoco_playground", reason="the playground extra (mujoco_playground) is not installed"
    )
    import subprocess

    from etils import epath
    from mujoco_playground._src import mjx_env

    from apexjax.envs.adapters import MenagerieNotFoundError

    where = tmp_path / "external_deps" / "mujoco_menagerie"
    monkeypatch.setattr(mjx_env, "EXTERNAL_DEPS_PATH", epath.Path(where.parent))
    monkeypatch.setattr(mjx_env, "MENAGERIE_PATH", epath.Path(where))

    def failed_clone(url, path, commit):
        raise subprocess.CalledProcessError(128, ["git", "clone"])

    def no_git(url, path, commit):
        raise FileNotFoundError(2, "No such file or directory", "git")

    for clone, reason in ((failed_clone, "git clone exited with status 128"), (no_git, "git")):
        monkeypatch.setattr(mjx_env, "_clone_with_progress", clone)
        with pytest.raises(MenagerieNotFoundError) as info:
            make("playground:Go1JoystickFlatTerrain")
        text = str(info.value)
        assert isinstance(info.value, ConfigError)
        assert "MuJoCo Menagerie" in text and str(where) in text and reason in text
        assert mjx_env.MENAGERIE_COMMIT_SHA in text and "git clone https://" in text

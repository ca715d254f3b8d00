"""A new run started from another run's checkpoint (``train(..., init_from=...)``,
``apexjax train --init-from``): what it takes (the policy, the dataset in write order), what
it leaves (seed, optimiser, guidance state, iteration count) and the errors, on the tiny
point_mass config of test_train.py."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from _tiny import TINY_ITEMS, tiny_config

from apexjax import policy
from apexjax.configs import ConfigError
from apexjax.guidance import GuidanceConfig
from apexjax.loop import build_task
from apexjax.policy import PolicyConfig
from apexjax.train import init_state_from, load_checkpoint, train

# 24 dataset rows per iteration (2 envs x 6 steps x expert + DAgger): 2 iterations overrun
# a 30-row dataset, so the source's rows wrap around (cursor 18)
SRC = tiny_config(iterations=2, dataset_capacity=30)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("init") / "source"
    train(SRC, run_dir)
    return run_dir


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def test_takes_the_policy_and_the_dataset_in_write_order(source_run):
    _, src = load_checkpoint(source_run)
    data = src.dataset
    assert int(data.size) == 30 and int(data.cursor) == 18  # full and wrapped
    written = np.roll(np.arange(30), -18)  # oldest row first

    config = tiny_config(seed=5, guidance=GuidanceConfig("fixed", 0.5), dataset_capacity=100)
    state, info = init_state_from(config, build_task(config), source_run)
    assert info["checkpoint"] == 2 and info["dataset_rows"] == 30 and info["task"] == "point_mass"
    # the policy acts exactly as the source's
    obs = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(policy.act(config.policy, state.policy, obs)),
        np.asarray(policy.act(SRC.policy, src.policy, obs)),
    )
    got, want = _host(state.dataset), _host(data)
    for field in ("obs", "actions", "source", "iteration"):
        np.testing.assert_array_equal(getattr(got, field)[:30], getattr(want, field)[written])
    assert int(got.size) == 30 and int(got.cursor) == 30
    # the new run's own: iteration count, seed, optimiser, guidance's running costs
    assert int(state.iteration) == 0 and int(state.policy.step) == 0
    assert not np.array_equal(np.asarray(state.key), np.asarray(src.key))
    assert np.isinf(float(state.best_expert_cost)) and np.isnan(float(state.untrained_policy_cost))

    # a smaller dataset keeps the newest rows; the policy alone keeps none
    small = dataclasses.replace(config, dataset_capacity=10)
    state, info = init_state_from(small, build_task(small), source_run, checkpoint=2)
    np.testing.assert_array_equal(np.asarray(state.dataset.obs), _host(data).obs[written[-10:]])
    assert info["dataset_rows"] == 10 and int(state.dataset.cursor) == 0
    state, info = init_state_from(config, build_task(config), source_run, dataset=False)
    assert info["dataset_rows"] == 0 and int(state.dataset.size) == 0


def test_a_new_run_from_a_checkpoint(source_run, tmp_path):
    run_dir = tmp_path / "fixed"
    config = tiny_config(iterations=1, guidance=GuidanceConfig("fixed", 0.5), dataset_capacity=60)
    summary = train(config, run_dir, init_from=source_run, init_checkpoint=1)
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["init_from"]["checkpoint"] == 1 and meta["init_from"]["dataset_rows"] == 24
    assert summary["metadata"]["init_from"] == meta["init_from"]
    saved, state = load_checkpoint(run_dir)
    assert saved == config and int(state.iteration) == 1
    assert int(state.dataset.size) == 48  # 24 carried + 24 of its own iteration
    assert summary["final"]["lambda_mean"] == pytest.approx(0.5)
    # a run started so resumes like any other
    train(dataclasses.replace(config, iterations=2), run_dir, resume=True)
    assert int(load_checkpoint(run_dir)[1].iteration) == 2


def test_errors_before_anything_is_written(source_run, tmp_path):
    run_dir = tmp_path / "new"
    cfg = tiny_config()
    with pytest.raises(ConfigError, match="init_from: a resumed run"):
        train(cfg, source_run, resume=True, init_from=source_run)
    with pytest.raises(ConfigError, match=r"init_from: .*not a run directory"):
        train(cfg, run_dir, init_from=tmp_path / "nothing")
    with pytest.raises(ConfigError, match=r"init_from: .*no checkpoint 7; saved: 1, 2"):
        train(cfg, run_dir, init_from=source_run, init_checkpoint=7)
    with pytest.raises(ConfigError, match="own directory"):
        train(cfg, source_run, init_from=source_run)
    wide = tiny_config(policy=PolicyConfig(hidden=(32,), batch_size=16))
    with pytest.raises(ConfigError, match=r"policy\.hidden is \(16,\) there and \(32,\) here"):
        train(wide, run_dir, init_from=source_run)
    assert not (run_dir / "config.json").exists()  # nothing of the new run was written
    other = tiny_config("pendulum_swingup")
    with pytest.raises(ConfigError, match="trained 'point_mass', this one is 'pendulum_swingup'"):
        init_state_from(other, build_task(other), source_run)


def test_cli(source_run, tmp_path, capsys):
    from apexjax.cli import main

    run_dir = tmp_path / "cli"
    base = ["train", "--task", "point_mass", "--run-dir", str(run_dir), "--no-render"]
    for item in [*TINY_ITEMS, "iterations=1", "dataset_capacity=30"]:
        base += ["--set", item]
    argv = [*base, "--init-from", str(source_run), "--init-policy-only"]
    assert main(argv) == 0
    assert "from " + str(source_run) in capsys.readouterr().err
    meta = json.loads((run_dir / "metadata.json").read_text())["init_from"]
    assert meta["dataset_rows"] == 0 and meta["checkpoint"] == 2
    assert main([*argv, "--resume"]) == 2
    assert "--init-from: a resumed run" in capsys.readouterr().err
    assert main([*base[:4], str(tmp_path / "x"), "--init-checkpoint", "1"]) == 2
    assert "only with --init-from" in capsys.readouterr().err

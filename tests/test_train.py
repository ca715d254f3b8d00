"""Run directory, checkpoints and exact resume of the training driver."""

import dataclasses
import json

import pytest

from apexjax.configs import ConfigError
from apexjax.guidance import GuidanceConfig
from apexjax.loop import TrainConfig
from apexjax.planning.icem import ICEMConfig
from apexjax.policy import PolicyConfig
from apexjax.train import load_checkpoint, train

CFG = TrainConfig(
    task="pendulum_swingup",
    iterations=2,
    num_envs=2,
    episode_length=6,
    sgd_steps=5,
    dataset_capacity=100,
    planner=ICEMConfig(population=8, elites=2, horizon=5, iterations=2),
    policy=PolicyConfig(hidden=(16,), batch_size=16),
    guidance=GuidanceConfig("relative", 0.1),
)


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    train(CFG, full)
    part = tmp_path / "part"
    train(dataclasses.replace(CFG, iterations=1), part)
    train(CFG, part, resume=True)  # continues to CFG.iterations
    assert _rows(full) == _rows(part)
    assert len(_rows(full)) == 2
    for name in ("config.json", "metrics.csv", "summary.json"):
        assert (full / name).exists()
    config, state = load_checkpoint(part)
    assert config == CFG
    assert int(state.iteration) == 2

    with pytest.raises(ConfigError, match="already holds a run"):
        train(CFG, full)  # never overwrites a saved run


def test_bad_run_directories_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt JSON"):
        load_checkpoint(tmp_path)

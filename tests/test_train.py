"""Run directory, checkpoints and exact resume of the training driver.

The driver's mechanics do not depend on the physics, so these run on ``point_mass`` (a
pure-JAX task that compiles in seconds, not minutes like an MJX model).
"""

import dataclasses
import json

import pytest
from _tiny import tiny_config

import apexjax.envs as envs
from apexjax.configs import ConfigError
from apexjax.train import load_checkpoint, train

CFG = tiny_config(iterations=2)


# CFG as command-line items
CFG_ITEMS = [
    "num_envs=2",
    "episode_length=6",
    "sgd_steps=5",
    "dataset_capacity=100",
    "planner.population=8",
    "planner.elites=2",
    "planner.horizon=5",
    "planner.iterations=2",
    "policy.hidden=[16]",
    "policy.batch_size=16",
    "guidance.mode=progress",
    "guidance.weight=0.1",
]


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


def test_cli_train_then_eval(tmp_path, capsys):
    from apexjax.cli import main

    run_dir = tmp_path / "run"
    args = ["train", "--task", "point_mass", "--run-dir", str(run_dir), "--no-render"]
    args += ["--set", "iterations=1"]
    # CFG's training step (a hit in the compilation cache after the resume test)
    for item in CFG_ITEMS:
        args += ["--set", item]
    assert main(args) == 0
    assert load_checkpoint(run_dir)[0] == dataclasses.replace(CFG, iterations=1)
    row = "| policy alone return (n=2 episodes) |"  # the summary table, with its episodes
    assert row in capsys.readouterr().err
    assert row in (run_dir / "summary.md").read_text()
    png = run_dir / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run_dir / "summary.json").read_text())["plot"] == png.name
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    out = json.loads((run_dir / "eval.json").read_text())
    assert out["episodes"] == 2 and out["iteration"] == 1
    assert {"policy_return", "expert_return"} <= set(out)
    # the policy alone without the expert: the same policy episodes, no expert metrics
    alone = run_dir / "alone.json"
    capsys.readouterr()
    argv = ["eval", str(run_dir), "--episodes", "2", "--expert-episodes", "0", "--out", str(alone)]
    assert main(argv) == 0
    solo = json.loads(alone.read_text())
    assert solo["policy_return"] == out["policy_return"] and solo["expert_return"] is None
    assert solo["expert_episodes"] == 0 and "expert" not in capsys.readouterr().err
    assert main([*argv[:-2], "--expert-episodes", "-1", "--out", str(tmp_path / "x.json")]) == 2
    assert "--expert-episodes: must be >= 0" in capsys.readouterr().err
    # judged over another episode length than the run trained on (0: the task's own)
    assert solo["episode_length"] == CFG.episode_length
    longer = tmp_path / "longer.json"
    argv = ["eval", str(run_dir), "--episodes", "2", "--expert-episodes", "0"]
    assert main([*argv, "--episode-length", "0", "--out", str(longer)]) == 0
    own = envs.default_episode_length("point_mass")
    assert own != CFG.episode_length and json.loads(longer.read_text())["episode_length"] == own
    assert main([*argv, "--episode-length", "-3", "--out", str(tmp_path / "y.json")]) == 2
    assert "--episode-length: must be >= 0" in capsys.readouterr().err

    # export: the NumPy-only file acts like the checkpointed JAX policy
    import numpy as np

    from apexjax import policy
    from apexjax.export import load_numpy_policy

    npz = tmp_path / "policy.npz"
    assert main(["export", str(run_dir), "--out", str(npz)]) == 0
    assert main(["export", str(run_dir), "--out", str(npz)]) == 2  # never overwrites silently
    assert "--force" in capsys.readouterr().err
    config, state = load_checkpoint(run_dir)
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)  # point_mass obs
    expected = np.asarray(policy.act(config.policy, state.policy, obs))
    np.testing.assert_allclose(load_numpy_policy(npz)(obs), expected, atol=1e-5, rtol=1e-5)


def test_cli_bad_hang_timeout(tmp_path, capsys):
    from apexjax.cli import main

    assert main(["train", "--run-dir", str(tmp_path / "r"), "--hang-timeout", "-1"]) == 2
    assert "--hang-timeout" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("nope=1", "unknown field 'nope'"),
        ("planner.elites=30", "elites"),
        ("iterations=two", "iterations"),
        ("guidance.mode=sometimes", "mode"),
        ("optimizer.lr=1", "unknown group"),
    ],
)
def test_cli_bad_override_is_one_clear_error(tmp_path, capsys, override, message):
    from apexjax.cli import main

    assert main(["train", "--run-dir", str(tmp_path / "r"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()

"""experiments/guidance_drag.py: the training's expert episode toward the untrained policy at
fixed guidance weights, one line and one JSON row per weight and seed."""

import json
import pathlib
import sys

import pytest

from apexjax.configs import ConfigError

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ are scripts beside the package

from experiments import guidance_drag  # noqa: E402

ARGS = ["--preset", "smoke", "--set", "backend=native", "--episode-length", "8", "--block", "4"]


def test_weights_and_seeds_to_json(tmp_path, capsys):
    out = tmp_path / "drag.json"
    argv = ["cartpole_swingup", "--weights", "0,2", "--seeds", "0,3", *ARGS, "--out", str(out)]
    assert guidance_drag.main(argv) == 0
    assert capsys.readouterr().out.count("λ ") == 4
    result = json.loads(out.read_text())
    rows = result["episodes"]
    assert [(r["weight"], r["seed"]) for r in rows] == [(0, 0), (0, 3), (2, 0), (2, 3)]
    # the weight held over the whole episode, and the blocks' means make up the return
    assert [r["weights_seen"] for r in rows] == [[0, 0]] * 2 + [[2, 2]] * 2
    for r in rows:
        assert len(r["per_block_mean_return"]) == 2
        assert sum(r["per_block_mean_return"]) * 4 == pytest.approx(r["return"], abs=0.01)
    assert result["command"].startswith("python experiments/guidance_drag.py cartpole_swingup")
    assert "environment" in result


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit, match="--weights"):
        guidance_drag.main(["cartpole_swingup", "--weights", "-1"])
    with pytest.raises(SystemExit, match="guidance"):
        guidance_drag.main(["cartpole_swingup", "--weights", "1", "--set", "guidance.weight=2"])


def test_toward_a_trained_runs_policy(tiny_cartpole_run, tmp_path):
    out = tmp_path / "drag.json"
    argv = ["cartpole_swingup", "--weights", "1", *ARGS, "--set", "policy.hidden=[16]"]
    argv += ["--policy-from", str(tiny_cartpole_run), "--checkpoint", "1", "--out", str(out)]
    assert guidance_drag.main(argv) == 0
    policy = json.loads(out.read_text())["policy"]
    assert policy["checkpoint"] == 1 and policy["dataset_rows"] == 0
    # the network must match the run's
    with pytest.raises(ConfigError, match=r"policy\.hidden"):
        guidance_drag.main([*argv[:-2], "--set", "policy.hidden=[8]"])

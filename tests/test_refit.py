"""experiments/refit.py: offline refits of a saved run's dataset, each evaluated alone."""

import json
import pathlib
import sys

import numpy as np
import pytest
from _tiny import tiny_config

from apexjax import aggregator
from apexjax.train import load_checkpoint, train

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ are scripts beside the package

from experiments import refit  # noqa: E402

TINY = tiny_config("cartpole_swingup", episode_length=20, dataset_capacity=200, backend="native")


def test_refit_reads_the_runs_dataset_and_writes_json(tmp_path):
    run = tmp_path / "run"
    train(TINY, run)
    _, state = load_checkpoint(run)
    out = tmp_path / "refit.json"
    variants = ["base::5", "wide expert:hidden=16x16,learning_rate=1e-3:5"]
    args = [str(run), "--episodes", "2", "--out", str(out)]
    assert refit.main(args + [a for v in variants for a in ("--variant", v)]) == 0
    r = json.loads(out.read_text())
    n = int(state.dataset.size)
    expert = int(np.sum(np.asarray(state.dataset.source[:n]) == aggregator.SOURCE_EXPERT))
    assert (r["rows"], r["expert_rows"], r["iteration"]) == (n, expert, 1)
    base, wide = r["variants"]
    assert base["rows"] == n and wide["rows"] == expert  # "expert" in the name: expert rows only
    assert wide["policy"] == {"hidden": [16, 16], "learning_rate": 1e-3}
    for v in (base, wide):
        assert np.isfinite([v["train_loss"], v["all_rows_loss"], v["policy_return"]]).all()
        assert 0.0 <= v["policy_success"] <= 1.0
    assert r["command"].startswith("python experiments/refit.py ")


def test_refit_rejects_a_malformed_variant():
    with pytest.raises(SystemExit, match="--variant"):
        refit.parse_variant("no steps")


def test_checkpoint_evals_compare_runs_on_the_same_episodes(tmp_path):
    from experiments import checkpoint_evals

    cfg = tiny_config("cartpole_swingup", episode_length=20, iterations=2, backend="native")
    run = tmp_path / "run"
    train(cfg, run)
    out = tmp_path / "evals.json"
    # the same run twice under two names: identical episodes give identical numbers
    assert (
        checkpoint_evals.main(
            ["a=" + str(run), "b=" + str(run), "--episodes", "3", "--out", str(out)]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["task"] == "cartpole_swingup" and r["episodes"] == 3
    a, b = r["runs"]["a"], r["runs"]["b"]
    assert [c["checkpoint"] for c in a["checkpoints"]] == [1, 2]
    assert a["checkpoints"] == b["checkpoints"]
    assert a["config"] == {"label": "executed", "guidance": cfg.guidance.mode}
    assert np.isfinite([c["policy_return"] for c in a["checkpoints"]]).all()
    assert a["last_return"] == a["checkpoints"][-1]["policy_return"]
    last = a["checkpoints"][-1]
    assert len(last["policy_returns"]) == 3
    assert np.mean(last["policy_returns"]) == pytest.approx(last["policy_return"], abs=0.01)
    assert last["policy_return_median"] == pytest.approx(
        np.median(last["policy_returns"]), abs=0.01
    )
    assert r["command"].startswith("python experiments/checkpoint_evals.py a=")
    with pytest.raises(SystemExit, match="NAME=RUN_DIR"):
        checkpoint_evals.parse_run(str(run))
    with pytest.raises(SystemExit, match="no checkpoints"):
        checkpoint_evals.main(["c=" + str(tmp_path / "empty")])

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


@pytest.fixture(scope="module")
def tiny_run(tiny_cartpole_run):
    """``_tiny.TINY_CARTPOLE`` trained for one iteration (the scripts only read it)."""
    return tiny_cartpole_run


def test_refit_reads_the_runs_dataset_and_writes_json(tiny_run, tmp_path):
    run = tiny_run
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


def test_refit_ensembles_windows_seeds_and_decay(tiny_run, tmp_path):
    out = tmp_path / "refit.json"
    variants = ["two:ensemble=2:5", "late:since=0,norm_since=0,seed=1,lr_end=1e-4:10"]
    args = [str(tiny_run), "--episodes", "2", "--out", str(out)]
    assert refit.main(args + [a for v in variants for a in ("--variant", v)]) == 0
    two, late = json.loads(out.read_text())["variants"]
    assert (two["ensemble"], two["seed"], two["lr_end"]) == (2, 0, None)
    assert (late["ensemble"], late["seed"], late["lr_end"]) == (1, 1, 1e-4)
    assert late["since_iteration"] == late["normalizer_since_iteration"] == 0
    for v in (two, late):
        assert v["policy"] == {} and len(v["policy_returns"]) == 2
        assert np.isfinite([v["train_loss"], v["all_rows_loss"], v["policy_return"]]).all()
    with pytest.raises(SystemExit, match="no rows of iteration 5"):
        refit.main([str(tiny_run), "--episodes", "1", "--variant", "none:since=5:5"])
    with pytest.raises(SystemExit, match="up_col 99"):
        refit.main([str(tiny_run), "--episodes", "1", "--variant", "x:up=2,up_col=99:5"])
    with pytest.raises(SystemExit, match="up must be > 0"):
        refit.main([str(tiny_run), "--episodes", "1", "--variant", "x:up=0:5"])
    with pytest.raises(SystemExit, match="divisible"):
        refit.main([str(tiny_run), "--episodes", "1", "--variant", "odd:lr_end=1e-4:15"])


def test_refit_pools_the_rows_of_other_runs(tiny_run, tmp_path):
    _, state = load_checkpoint(tiny_run)
    n = int(state.dataset.size)
    expert = int(np.sum(np.asarray(state.dataset.source[:n]) == aggregator.SOURCE_EXPERT))
    out = tmp_path / "pooled.json"
    args = [str(tiny_run), "--episodes", "1", "--variant", "all::5", "--variant", "expert::5"]
    assert refit.main([*args, "--pool", f"{tiny_run}:0", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["rows"], r["expert_rows"]) == (2 * n, 2 * expert)
    assert r["pooled"] == [
        {
            "run_dir": str(tiny_run),
            "first_iteration": 0,
            "iteration": 1,
            "rows": n,
            "expert_rows": expert,
        }
    ]
    assert [v["rows"] for v in r["variants"]] == [2 * n, 2 * expert]
    assert [v["upweighted_rows"] for v in r["variants"]] == [0, 0]


def test_refit_oversamples_the_rows_below_a_threshold(tiny_run, tmp_path):
    _, state = load_checkpoint(tiny_run)
    n = int(state.dataset.size)
    col = np.asarray(state.dataset.obs[:n])[:, 0]
    cut = float(np.median(col))
    out = tmp_path / "up.json"
    variant = f"up:up=4,up_col=0,up_below={cut}:5"
    assert (
        refit.main([str(tiny_run), "--episodes", "1", "--variant", variant, "--out", str(out)]) == 0
    )
    (v,) = json.loads(out.read_text())["variants"]
    assert (v["upweight"], v["upweighted_rows"]) == (4.0, int(np.sum(col < cut)))
    assert v["policy"] == {} and np.isfinite(v["all_rows_loss"])
    assert refit.parse_pool("runs/a:b") == (pathlib.Path("runs/a:b"), 0)
    with pytest.raises(SystemExit, match="no rows of iteration 1"):
        refit.main([str(tiny_run), "--episodes", "1", "--pool", f"{tiny_run}:1"])


def test_an_ensemble_is_one_wide_policy_acting_with_the_mean_output():
    import jax
    import jax.numpy as jnp

    from apexjax import policy

    cfg = policy.PolicyConfig(hidden=(8, 8), output_scale=1.0)
    members = [policy.init(cfg, jax.random.key(i), 5, -jnp.ones(3), jnp.ones(3)) for i in range(3)]
    wide, state = refit.ensemble(cfg, members)
    assert wide.hidden == (24, 24)
    x = jax.random.normal(jax.random.key(9), (4, 5))
    pre = sum(jnp.arctanh(policy.act(cfg, m, x)) for m in members) / 3
    np.testing.assert_allclose(policy.act(wide, state, x), jnp.tanh(pre), atol=1e-5)


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
    later = tmp_path / "later.json"
    assert (
        checkpoint_evals.main(
            ["a=" + str(run), "--episodes", "3", "--first", "2", "--out", str(later)]
        )
        == 0
    )
    (only,) = json.loads(later.read_text())["runs"]["a"]["checkpoints"]
    assert only == last  # checkpoint 2 alone, measured on the same episodes
    with pytest.raises(SystemExit, match="no checkpoints from 3 on"):
        checkpoint_evals.main(["a=" + str(run), "--first", "3"])


def test_label_noise_measures_each_way_of_starting_the_planner(tiny_run, tmp_path, monkeypatch):
    """experiments/label_noise.py on a tiny run: each way of starting the planner measured,
    finite returns, noise shares in [0, 1], the command recorded, bad counts refused. Two of
    the four ways, which between them take both sides of the script's branches (planner
    reset at every step or not, policy warm start or not); each way compiles its own
    programs, and the other two only set config flags the planner's own tests cover."""
    from experiments import label_noise

    monkeypatch.setattr(label_noise, "WAYS", ("afresh", "policy, no elites"))
    run = tiny_run
    out = tmp_path / "noise.json"
    args = [str(run), "--steps", "8", "--states", "3", "--repeats", "3", "--episodes", "1"]
    assert label_noise.main([*args, "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["ways"]) == set(label_noise.WAYS) and r["checkpoint"] == 1
    for way in r["ways"].values():
        assert len(way["expert_returns"]) == 1 and np.isfinite(way["expert_returns"]).all()
        for label in ("executed", "mean"):
            for memory in ("state_only", "given_memory"):
                assert 0.0 <= way[label][memory]["noise_share"] <= 1.0
        assert way["policy_to_mean_label"] >= 0.0 and way["policy_to_executed_label"] >= 0.0
    assert r["command"].startswith("python experiments/label_noise.py ")
    with pytest.raises(SystemExit, match="--states"):
        label_noise.main([str(run), "--steps", "2", "--states", "3"])


def test_end_states_groups_still_episodes_and_counts_the_rows_there(tiny_run, tmp_path):
    """experiments/end_states.py on a tiny run: the policy's episodes start where
    checkpoint_evals' do (same returns), every episode still and within one group under
    huge thresholds, then all valid rows near it; the greedy grouping on its own."""
    import jax

    from apexjax.episodes import episode_fns, episode_returns
    from apexjax.run import build_task
    from experiments import end_states
    from experiments.checkpoint_evals import episode_keys

    out = tmp_path / "end.json"
    args = [str(tiny_run), "--episodes", "3", "--tail", "5", "--still", "1e9"]
    assert end_states.main([*args, "--radius", "1e9", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    cfg, state = load_checkpoint(tiny_run)
    ep = jax.vmap(lambda k: episode_fns(cfg, build_task(cfg)).policy(state.policy, k))(
        episode_keys(3)
    )
    np.testing.assert_allclose(r["returns"], episode_returns(ep.costs), rtol=1e-5)
    n = int(state.dataset.size)
    assert (r["task"], r["checkpoint"], r["tail"], r["dataset_rows"]) == (
        "cartpole_swingup",
        1,
        5,
        n,
    )
    assert r["still"] == [True] * 3 and len(r["final_observations"]) == 3
    (g,) = r["groups"]
    assert g["size"] == 3 and g["dataset_rows_near"] == n
    assert sum(g["dataset_rows_near_by_origin"].values()) == n
    assert set(g["dataset_rows_near_by_origin"]) <= {"expert, iteration 1", "policy, iteration 1"}
    assert np.all(np.abs(g["policy_action"]) <= 1.0)
    assert g["policy_action_norm"] == pytest.approx(np.linalg.norm(g["policy_action"]))
    assert len(g["label_std"]) == len(g["policy_action"])
    assert g["label_std_mean"] == pytest.approx(np.mean(g["label_std"]))
    assert r["command"].startswith("python experiments/end_states.py ")
    x = np.array([[0.0], [5.0], [0.5], [5.2], [9.0], [1.1]])
    still = np.array([True, True, True, True, True, False])
    assert end_states.group_still(x, still, 1.0) == [[0, 2], [1, 3], [4]]
    assert end_states.group_still(x, np.zeros(6, bool), 1.0) == []
    with pytest.raises(SystemExit, match="--radius"):
        end_states.main([str(tiny_run), "--radius", "0"])

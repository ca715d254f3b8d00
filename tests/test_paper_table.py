"""experiments/paper_table.py: a methods table from committed metrics, checkpoint
evaluations and planner runs (no training, nothing compiles), tabulated by report.py."""

import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ are scripts beside the package

from experiments import paper_table, report  # noqa: E402

TASK = "halfcheetah_running"


def _metrics(path: pathlib.Path, n: int, seed: int, untrained: bool) -> pathlib.Path:
    rows = []
    for i in range(1, n + 1):
        row = {
            "iteration": i,
            "seconds": 10.0,
            "expert_return": 5000.0 + 10 * i + seed,
            "policy_return": 100.0 * i,
            "dagger_return": -1.0 if i == 1 else 50.0 * i,
            "lambda_mean": 0.1 * i,
            "loss": 0.2 / i,
            "simulated_steps": 1000.0,
        }
        if untrained and i == 1:
            row["untrained_policy_return"] = -2.0
        rows.append(row)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _evals(path: pathlib.Path, run: str, n: int) -> pathlib.Path:
    checkpoints = [
        {"checkpoint": i, "policy_return": 1000.0 * i, "policy_returns": [900.0 * i, 1100.0 * i]}
        for i in range(1, n + 1)
    ]
    path.write_text(json.dumps({"episodes": 20, "runs": {run: {"checkpoints": checkpoints}}}))
    return path


def _plan(path: pathlib.Path, seed: int, ret: float) -> pathlib.Path:
    path.write_text(
        json.dumps(
            {
                "seed": seed,
                "returns": [ret - 1, ret + 1],
                "success": None,
                "mean_return": ret,
                "compile_s": 3.0,
                "run_s": 100.0,
                "time_per_step_s": 0.1,
                "simulated_steps_per_control_step": 3000,
                "config": {"population": 40},
                "task": TASK,
                "task_config": {"episode_length": 1000},
            }
        )
    )
    return path


@pytest.fixture
def spec(tmp_path):
    seeds = []
    for s in (0, 1):
        seeds.append(
            {
                "seed": s,
                "run_dir": f"runs/apex_s{s}",
                "metrics": str(_metrics(tmp_path / f"m{s}.jsonl", 4, s, untrained=s == 0)),
                "evals": str(_evals(tmp_path / f"e{s}.json", "mean", 4)),
                "run": "mean",
            }
        )
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"compile_seconds": 12.5}))
    seeds[0]["summary"] = str(summary)
    log = tmp_path / "train.log"
    log.write_text(
        "compiling\n00:19:31 INFO apexjax.driver: compiled the training step in 28.0 s\n"
    )
    seeds[1]["log"] = str(log)  # a run stopped before its summary
    spec = {
        "task": TASK,
        "preset": "paper",
        "checkpoint": 3,
        "notes": ["a note"],
        "methods": {
            "icem": {
                "planner_only": True,
                "command": "apexjax plan ...",
                "seeds": [{"seed": 0, "plan": str(_plan(tmp_path / "p0.json", 0, 5400.0))}],
            },
            "apex": {"set": ["num_envs=2", "iterations=4", "label=mean"], "seeds": seeds},
        },
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_table_takes_the_checkpoint_evaluation_and_that_iterations_expert(spec, tmp_path):
    out = tmp_path / "table.json"
    assert paper_table.main([str(spec), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["task"] == TASK and r["seeds"] == [0, 1] and r["eval_episodes"] == 20
    apex, icem = r["methods"]["apex"], r["methods"]["icem"]
    fe = apex["final_eval"]
    assert fe["policy_return"] == [3000.0, 3000.0]  # checkpoint 3's evaluation
    assert fe["policy_return_median"] == [3000.0, 3000.0]
    assert fe["expert_return"] == [5030.0, 5031.0]  # iteration 3's training episodes
    # R_0: the adaptive weight's measurement, else the first DAgger phase
    assert apex["initial_eval"]["policy_return"] == [-2.0, -1.0]
    assert len(apex["history"]) == 3 and apex["history"][2]["policy_return_eval"] == [3000.0] * 2
    assert apex["compile_s"] == (12.5 + 28.0) / 2 and apex["train_s"] == 60.0
    assert apex["simulated_steps_all_seeds"] == 6000.0
    # the command and config come from the preset and the settings
    assert apex["commands"][1].startswith(
        f"apexjax train --task {TASK} --preset paper --run-dir runs/apex_s1 --set seed=1 "
    )
    assert apex["config"]["label"] == "mean" and apex["config"]["num_envs"] == 2
    assert apex["reduction_vs_paper"]["per_control_step"] == pytest.approx(1.0)
    assert icem["planner_only"] and icem["final_eval"] == {"expert_return": [5400.0]}
    assert icem["expert_returns"] == [[5399.0, 5401.0]]

    md = tmp_path / "t.md"
    assert report.main([str(out), "--md", str(md), "--plot-dir", str(tmp_path)]) == 0
    row = next(x for x in md.read_text().splitlines() if f"| {TASK} | apex |" in x)
    assert "| 3000.0 ± 0.0 |" in row
    assert "| 3e+03 |" in row  # simulated steps per seed
    assert f"{TASK}: seeds icem 0; apex 0, 1," in md.read_text()
    assert (tmp_path / f"{TASK}.png").stat().st_size > 10_000


def test_missing_checkpoint_or_run_is_a_clear_error(spec, tmp_path):
    s = json.loads(spec.read_text())
    s["checkpoint"] = 5
    spec.write_text(json.dumps(s))
    with pytest.raises(SystemExit, match="4 iterations, need 5"):
        paper_table.main([str(spec), "--out", str(tmp_path / "x.json")])
    s["checkpoint"] = 3
    s["methods"]["apex"]["seeds"][0]["run"] = "nope"
    spec.write_text(json.dumps(s))
    with pytest.raises(SystemExit, match="no run named 'nope'"):
        paper_table.main([str(spec), "--out", str(tmp_path / "x.json")])


def test_a_single_apexjax_eval_file_is_that_checkpoints_evaluation(spec, tmp_path):
    s = json.loads(spec.read_text())
    one = tmp_path / "eval20.json"  # `apexjax eval --out`: the run's last checkpoint only
    one.write_text(
        json.dumps({"episodes": 20, "iteration": 3, "policy_return": -7.0, "policy_success": 0.25})
    )
    for e in s["methods"]["apex"]["seeds"]:
        e["evals"] = str(one)
        del e["run"]
    spec.write_text(json.dumps(s))
    out = tmp_path / "table.json"
    assert paper_table.main([str(spec), "--out", str(out)]) == 0
    fe = json.loads(out.read_text())["methods"]["apex"]["final_eval"]
    assert fe["policy_return"] == [-7.0, -7.0] and fe["policy_success"] == [0.25, 0.25]
    s["checkpoint"] = 2  # that file has no evaluation of checkpoint 2
    spec.write_text(json.dumps(s))
    with pytest.raises(SystemExit, match="has no checkpoint 2"):
        paper_table.main([str(spec), "--out", str(out)])


@pytest.mark.parametrize(
    "spec_path", sorted((ROOT / "experiments" / "paper_specs").glob("*.json")), ids=lambda p: p.stem
)
def test_committed_specs_rebuild_their_committed_tables(spec_path, tmp_path):
    """Every committed spec still builds from the committed files, into the committed table
    (so a table README quotes is what its spec and files say)."""
    out = tmp_path / "table.json"
    assert paper_table.main([str(spec_path), "--out", str(out)]) == 0
    built = json.loads(out.read_text())
    committed = json.loads(
        (ROOT / "experiments" / "results" / "paper" / f"{built['task']}.json").read_text()
    )
    assert built["methods"].keys() == committed["methods"].keys()
    for name, m in built["methods"].items():
        assert m["final_eval"] == committed["methods"][name]["final_eval"], name
        assert m["commands"] == committed["methods"][name]["commands"], name

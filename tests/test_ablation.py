"""experiments/ablation.py and report.py: the planner-only methods (iCEM alone, plain CEM at
equal budget) share the evaluation of the training methods, presets set the budget, and the
report tabulates and plots all methods. A toy task keeps the one compiled run small."""

import argparse
import json
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from apexjax.envs.base import State, Task, TaskConfig
from apexjax.planning import icem

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ and benchmarks/ are scripts beside the package

from experiments import ablation, report  # noqa: E402

TOY = "line_ablation_test"


class _LineConfig(TaskConfig):
    pass


class _Line(Task):
    """1-D integrator to x = 1: compiles in seconds."""

    name = TOY
    action_low = np.array([-1.0], np.float32)
    action_high = np.array([1.0], np.float32)
    frame_skip = 1
    dt = 0.1
    has_success = True

    def __init__(self, config):
        self.config = config
        self.episode_length = config.episode_length

    def reset(self, key):
        return State(data=jnp.zeros(1), t=jnp.int32(0))

    def _step(self, s, a):
        return s.replace(data=s.data + 0.2 * a, t=s.t + 1)

    def cost(self, s, a, s2):
        return jnp.sum((s2.data - 1.0) ** 2)

    def observation(self, s):
        return s.data

    def success(self, s):
        return jnp.abs(s.data[0] - 1.0) < 0.1


def _args(**kw) -> argparse.Namespace:
    base = dict(
        task="cartpole_swingup",
        preset=None,
        iterations=None,
        num_envs=None,
        episode_length=None,
        sgd_steps=None,
        population=None,
        horizon=None,
        devices=None,
        set=[],
    )
    return argparse.Namespace(**{**base, **kw})


def test_planner_only_method_configs():
    base = ablation.base_config(_args(preset="cpu"))
    ic = ablation.method_config(base, "icem", 1.0)
    cem = ablation.method_config(base, "cem", 1.0)
    for c in (ic, cem):
        assert c.policy_candidates == 0 and c.planner.num_extra_candidates == 0
        assert c.guidance.mode == "off"
    unguided = icem.simulated_per_step(ic.planner)
    assert ic.planner == ablation.method_config(base, "dagger", 1.0).planner  # the same expert
    assert unguided == 760  # (16 + 12 + 9 + 1 shifted) x 20
    assert abs(icem.simulated_per_step(cem.planner) - unguided) <= 0.05 * unguided
    assert cem.planner.beta == 0.0 and not cem.planner.shift_elites


def test_preset_and_flags_set_the_budget():
    c = ablation.base_config(_args(preset="cpu", population=32, set=["planner.elites=8"]))
    assert (c.planner.population, c.planner.elites, c.iterations) == (32, 8, 5)
    assert c.planner.beta == 0.25  # the preset's β for cart-pole
    c = ablation.base_config(_args())  # no preset: the script's own defaults
    assert (c.iterations, c.num_envs, c.planner.population, c.sgd_steps) == (8, 8, 40, 500)


def test_bad_arguments_fail_before_compiling(tmp_path, capsys):
    out = str(tmp_path / "x.json")
    assert ablation.main(["--preset", "gpu", "--out", out]) == 2
    assert "allowed: paper, cpu, smoke" in capsys.readouterr().err
    assert ablation.main(["--methods", "icem,ppo", "--out", out]) == 2
    assert "unknown method 'ppo'" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_report_reads_older_result_files():
    r = json.loads((ROOT / "experiments/results/cartpole_swingup.json").read_text())
    text = report.table(report.merge([r]))
    assert "| cartpole_swingup | apex | -36.4 ± 4.9 | 91.7 ± 5.9 % |" in text
    assert "| 820 |" in text  # planner steps per control step, from the saved config


def test_planner_only_shares_schema_and_episodes(tmp_path, register_task):
    register_task(TOY, _Line, _LineConfig)
    out = tmp_path / f"{TOY}.json"
    # Planner-only methods alone: two small evaluation programs (a training method's
    # compile would double the time; its schema is covered by the report tests below).
    argv = ["--task", TOY, "--methods", "icem,cem", "--seeds", "0,1", "--iterations", "1"]
    argv += ["--num-envs", "1", "--episode-length", "6", "--population", "8", "--horizon", "4"]
    argv += ["--set", "planner.elites=2", "--set", "planner.iterations=2", "--sgd-steps", "4"]
    argv += ["--set", "policy.hidden=[8]"]
    argv += ["--set", "policy.batch_size=4", "--eval-episodes", "2", "--out", str(out)]
    assert ablation.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["preset"] is None and r["reduction_vs_paper"] is None and r["eval_episodes"] == 2
    ic, cem = r["methods"]["icem"], r["methods"]["cem"]
    for res in (ic, cem):
        assert res["planner_only"] and res["history"] == [] and res["train_s"] == 0.0
        assert sorted(res["final_eval"]) == ["expert_return", "expert_success"]
        assert len(res["final_eval"]["expert_return"]) == 2  # per seed
        per_step = res["planner_simulated_per_step"]
        assert res["eval_simulated_steps_all_seeds"] == 2 * 2 * 6 * per_step
    # N=8, then max(2K, int(8 / 1.25)) = 6; int(2 * 0.3) = 0 shifted; CEM: 7 x 2 iterations
    assert (ic["planner_simulated_per_step"], cem["planner_simulated_per_step"]) == (56, 56)
    assert cem["config"]["planner"]["beta"] == 0.0
    # the same evaluation episodes and untrained policies (R_0) for every method
    assert ic["initial_eval"]["policy_return"] == cem["initial_eval"]["policy_return"]

    md = tmp_path / "t.md"
    assert report.main([str(out), "--md", str(md), "--plot-dir", str(tmp_path / "png")]) == 0
    text = md.read_text()
    icem_row = next(line for line in text.splitlines() if f"| {TOY} | icem |" in line)
    cells = [c.strip() for c in icem_row.strip("|").split("|")]
    assert cells[2:4] == ["–", "–"]  # no policy
    assert cells[6:8] == ["–", "–"] and cells[9] == "–"  # no share, λ or training
    assert "budget: no preset" in text
    assert (tmp_path / "png" / f"{TOY}.png").stat().st_size > 10_000


@pytest.mark.parametrize("missing", ["policy_success", None])
def test_report_plot_without_success_or_training(tmp_path, missing):
    hist = [
        {
            "policy_return": [-5.0, -4.0],
            "expert_return": [-2.0, -2.5],
            "lambda_mean": [0.0, 0.1],
            "simulated_steps": [10.0, 10.0],
        }
    ]
    fe = {"expert_return": [-1.0, -1.5], "policy_return": [-3.0, -3.5]}
    res = {
        "compile_s": 1.0,
        "train_s": 2.0,
        "eval_s": 1.0,
        "simulated_steps_all_seeds": 20.0,
        "initial_eval": {"expert_return": [-2.0, -2.0], "policy_return": [-9.0, -9.0]},
        "final_eval": fe,
        "history": hist,
    }
    alone = {**res, "planner_only": True, "history": [], "final_eval": {"expert_return": [-1, -1]}}
    methods = {"apex": res, "icem": alone} if missing else {"icem": alone}
    result = {"task": "t", "seeds": [0, 1], "environment": {}, "methods": methods}
    report.plot(result, tmp_path / "t.png")
    assert (tmp_path / "t.png").exists()
    assert "| t | icem | – | – | -1.0 ± 0.0 | – |" in report.table([result])
    experts = report.expert_table([result])
    if missing:  # a training method: its expert per iteration against the references
        assert "| apex | -2.2 |" in experts and "icem alone -1.0" in experts
        assert "untrained policy alone -9.0" in experts
    else:
        assert experts == ""

"""Named budgets (apexjax.presets): every preset builds a valid config, ``--set`` wins, the
paper preset is REFERENCE.md's iCEM, errors name what is allowed. Configs only: no compile."""

import dataclasses
import subprocess
import sys

import pytest

from apexjax import cli, envs, presets
from apexjax.commands.train import build_config, preset_metadata
from apexjax.configs import ConfigError
from apexjax.planning import icem
from apexjax.train import summary_table

PAPER_TASKS = ("humanoid_standup", "door", "fetch_pick_and_place")
BENCHMARK_TASKS = ("halfcheetah_running", "cartpole_swingup")
ALL = [(t, n) for t in presets.PRESET_TASKS for n in presets.preset_names(t)]


def test_the_paper_and_benchmark_tasks_have_paper_and_cpu():
    for task in PAPER_TASKS + BENCHMARK_TASKS:
        assert {"paper", "cpu"} <= set(presets.preset_names(task)), task
    assert set(presets.CPU_SLOW_TASKS) == set(PAPER_TASKS)


@pytest.mark.parametrize("task, name", ALL)
def test_every_preset_builds_a_valid_config(task, name):
    # build_config validates the whole TrainConfig without loading the task's model, so
    # tasks that are not registered yet (door, fetch) are checked too.
    config = build_config(task, [], preset=name)
    assert config.task == task
    assert config.expert_planner.num_extra_candidates == config.policy_candidates
    # the dataset holds every row the run collects (nothing overwritten)
    b = presets.budget(config)
    assert config.dataset_capacity >= b.iterations * b.episodes_per_iteration * b.episode_length
    # the preset is expressible as --set items and reads back identically
    assert build_config(task, presets.override_items(presets.preset_overrides(task, name))) == (
        config
    )


@pytest.mark.parametrize("task", list(presets.PRESET_TASKS))
def test_paper_preset_is_the_reference_icem(task):
    c = build_config(task, [], preset="paper")
    p = c.planner
    assert (p.population, p.iterations, p.elites, p.horizon) == (40, 3, 10, 30)
    assert (p.decay, p.keep_fraction, p.momentum, p.init_std) == (1.25, 0.3, 0.1, 0.5)
    assert p.keep_elites and p.shift_elites and p.use_mean_actions and p.execute == "best"
    assert p.noise_normalization == "colorednoise"  # the authors' scale
    assert build_config(task, [], preset="cpu").planner.noise_normalization == "exact"
    assert c.episode_length == 0  # the task's own
    assert p.beta == envs.planner_beta(task)


def test_task_facts_live_in_the_task_configs():
    # the planner's β: REFERENCE.md's values, one place (the task's config class)
    assert {t: envs.planner_beta(t) for t in PAPER_TASKS + BENCHMARK_TASKS} == {
        "humanoid_standup": 2.0,
        "door": 2.5,
        "fetch_pick_and_place": 3.0,
        "halfcheetah_running": 0.25,
        "cartpole_swingup": 0.25,
    }
    assert envs.default_episode_length("door") == 200
    assert envs.default_episode_length("fetch_pick_and_place") == 50
    # Python and the command line plan with the same β: TrainConfig takes the task's
    from apexjax.loop import TrainConfig

    for task in PAPER_TASKS + BENCHMARK_TASKS:
        assert TrainConfig(task=task).planner.beta == envs.planner_beta(task), task
        assert build_config(task, []).planner.beta == envs.planner_beta(task), task
    assert TrainConfig().planner.beta == 0.25  # cart-pole's, not ICEMConfig's 2.0
    assert envs.planner_beta("brax:ant") == envs.TaskConfig.planner_beta
    with pytest.raises(envs.registry.UnknownTaskError):
        TrainConfig(task="no_such_task")


def test_set_wins_over_the_preset():
    c = build_config(
        "cartpole_swingup",
        ["planner.population=64", "iterations=2", "guidance.mode=fixed", "policy.hidden=[8]"],
        preset="cpu",
    )
    assert c.planner.population == 64 and c.iterations == 2
    assert c.guidance.mode == "fixed" and c.policy.hidden == (8,)
    assert c.planner.elites == 4 and c.num_envs == 2  # the rest of the preset stays
    # checks across the preset and --set run on the combination
    with pytest.raises(ConfigError, match=r"ICEMConfig.elites"):
        build_config("cartpole_swingup", ["planner.elites=10"], preset="cpu")


def test_unknown_names_are_one_clear_error(capsys):
    with pytest.raises(ConfigError, match=r"unknown preset 'gpu'.*allowed: paper, cpu, smoke"):
        presets.preset_overrides("cartpole_swingup", "gpu")
    with pytest.raises(
        ConfigError, match=r"task 'nope' has no presets; tasks with presets: .*door"
    ):
        presets.preset_overrides("nope", "paper")
    with pytest.raises(ConfigError, match=r"ICEMConfig: unknown field 'populaton'"):
        presets.apply_overrides(build_config("cartpole_swingup", []), {"planner.populaton": 3})
    with pytest.raises(ConfigError, match=r"unknown group 'planer'"):
        presets.apply_overrides(build_config("cartpole_swingup", []), {"planer.population": 3})
    # the command line: exit status 2 and the message, before anything compiles
    assert cli.main(["train", "--task", "cartpole_swingup", "--preset", "gpu"]) == 2
    assert "allowed: paper, cpu, smoke" in capsys.readouterr().err
    assert cli.main(["plan", "--task", "cartpole_swingup", "--preset", "gpu"]) == 2
    assert "unknown preset 'gpu'" in capsys.readouterr().err
    argv = ["train", "--task", "cartpole_swingup", "--preset", "cpu", "--resume"]
    assert cli.main(argv) == 2
    assert "resumed run keeps its saved config" in capsys.readouterr().err


def test_reduction_against_paper():
    # per control step: (40+32+25 + 3 shifted + 3 policy candidates) x 30 = 3,090 against
    # (16+12+9 + 1 + 3) x 20 = 820
    paper = presets.preset_budget("cartpole_swingup", "paper")
    cpu = presets.preset_budget("cartpole_swingup", "cpu")
    assert (paper.simulated_per_step, cpu.simulated_per_step) == (3090, 820)
    r = presets.reduction("cartpole_swingup", "cpu")
    assert r["per_control_step"] == pytest.approx(3090 / 820)
    assert r["per_run"] == pytest.approx((3090 * 200 * 32 * 15) / (820 * 200 * 4 * 5))
    for task in presets.PRESET_TASKS:
        red = presets.reduction(task, "cpu")
        assert red["per_control_step"] > 1 and red["per_run"] > 10, task
    # a config with --set on top is compared as it is
    c = build_config("cartpole_swingup", ["iterations=10"], preset="cpu")
    assert presets.config_reduction(c)["per_run"] == pytest.approx(r["per_run"] / 2)
    assert presets.config_reduction(dataclasses.replace(c, task="reacher")) is not None
    table = presets.budget_table(["door"])
    assert "| door | cpu (pipeline check) | 160 |" in table and "19.31×" in table


@pytest.mark.parametrize("task, name", ALL)
def test_cem_at_equal_budget(task, name):
    planner = build_config(task, [], preset=name).planner
    cem = presets.cem_at_equal_budget(planner)
    target = icem.simulated_per_step(dataclasses.replace(planner, num_extra_candidates=0))
    assert abs(icem.simulated_per_step(cem) - target) <= 0.05 * target
    assert cem.beta == 0 and not (cem.keep_elites or cem.shift_elites or cem.use_mean_actions)
    assert cem.momentum == 0 and cem.decay == 1.0
    assert (cem.horizon, cem.iterations, cem.elites) == (
        planner.horizon,
        planner.iterations,
        planner.elites,
    )


def test_cem_at_equal_budget_refuses_a_poor_match():
    with pytest.raises(ConfigError, match="more than 1% apart"):
        # 16+12+9+1 = 38 rows of 20 steps for iCEM; CEM's nearest is 13 x 3 = 39 rows
        presets.cem_at_equal_budget(
            icem.ICEMConfig(population=16, elites=4, horizon=20), tolerance=0.01
        )


def test_the_run_records_its_preset():
    c = build_config("cartpole_swingup", ["iterations=10"], preset="cpu")
    meta = preset_metadata("cartpole_swingup", "cpu", ["iterations=10"], c)
    assert meta["preset"] == "cpu" and meta["set"] == ["iterations=10"]
    assert "planner.population=16" in meta["preset_overrides"]
    summary = {
        "task": "cartpole_swingup",
        "iterations": 10,
        "num_devices": 1,
        "compile_seconds": 1.0,
        "train_seconds_this_session": 2.0,
        "final": {"iteration": 10, "policy_return": -30.0},
        "metadata": meta,
    }
    assert "| preset | cpu (3.77× fewer simulated steps per control step" in summary_table(summary)


def test_presets_command_lists_budgets(capsys):
    assert cli.main(["presets", "--task", "door"]) == 0
    out = capsys.readouterr().out
    assert "| door | paper | 3,090 | 200 |" in out
    assert cli.main(["presets", "--task", "door", "--show", "paper"]) == 0
    shown = capsys.readouterr().out
    assert "--set planner.population=40" in shown
    assert "planner.beta" not in shown  # a task fact (envs.planner_beta), not a budget


def test_importing_presets_does_not_import_jax():
    code = "import sys, apexjax.presets; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("task, name", ALL)
def test_plan_config_keeps_the_tasks_beta_under_every_preset(task, name):
    # `apexjax plan --preset`: the preset's planner budget with the task's own β (a preset
    # carries no β; building the planner from the preset alone once gave ICEMConfig's 2.0)
    planner = presets.plan_config(task, name)
    assert planner.beta == envs.planner_beta(task)
    assert planner == dataclasses.replace(
        build_config(task, [], preset=name).planner, num_extra_candidates=0
    )
    over = presets.plan_config(task, name, ["horizon=7", "beta=0.5"])
    assert (over.horizon, over.beta, over.population) == (7, 0.5, planner.population)
    cem = presets.plan_config(task, name, cem=True)
    assert cem == presets.cem_at_equal_budget(planner)
    assert cem.beta == 0.0 and cem.sampling == "truncated"


def test_plan_config_without_a_preset():
    assert presets.plan_config("door") == icem.ICEMConfig(beta=envs.planner_beta("door"))
    assert presets.plan_config("door", cem=True) == icem.cem_config()
    with pytest.raises(ConfigError, match="populaton"):
        presets.plan_config("door", overrides=["populaton=3"])


def test_compare_budget_words_a_reduction_either_way():
    assert presets.compare_budget(3.771, "steps") == "3.77× fewer steps than paper"
    assert presets.compare_budget(1.0, "steps") == "as many steps as paper"
    assert presets.compare_budget(0.5, "steps", "cpu") == "2× more steps than cpu"

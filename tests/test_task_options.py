"""TrainConfig.task_options: the task's own config fields, checked when the config is built."""

import json

import pytest

from apexjax.configs import ConfigError
from apexjax.loop import TrainConfig, build_task
from apexjax.train import config_from_dict


def test_task_options_reach_the_task():
    cfg = TrainConfig(task="point_mass", task_options=("mass=2.5", "success_distance=0.1"))
    task = build_task(cfg)
    assert task.config.mass == 2.5 and task.config.success_distance == 0.1
    assert build_task(TrainConfig(task="point_mass")).config.mass == 1.0


@pytest.mark.parametrize(
    "options, match",
    [
        (("no_such_field=1",), "unknown field 'no_such_field'"),
        (("mass=heavy",), "PointMassConfig.mass"),
        (("mass",), "field=value"),
        (("episode_length=5",), "TrainConfig.episode_length"),
    ],
)
def test_bad_task_options_fail_when_the_config_is_built(options, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(task="point_mass", task_options=options)


def test_adapter_tasks_take_no_task_options():
    with pytest.raises(ConfigError, match="task_options"):
        TrainConfig(task="brax:ant", task_options=("x=1",))


def test_task_options_survive_the_run_directory_round_trip():
    from apexjax.configs import to_dict

    cfg = TrainConfig(task="point_mass", task_options=("mass=2.5",))
    assert config_from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_cli_override_builds_task_options():
    from apexjax.commands.train import build_config

    cfg = build_config("point_mass", ["task_options=mass=2.5,damping=0.1"])
    assert cfg.task_options == ("mass=2.5", "damping=0.1")


def test_backend_is_a_train_config_field_checked_before_anything_builds():
    from apexjax.loop import TrainConfig, build_task, physics_backend

    assert build_task(TrainConfig(task="pendulum_swingup", backend="mjx")).backend == "mjx"
    assert physics_backend(TrainConfig(task="pendulum_swingup", backend="native")) == "native"
    assert physics_backend(TrainConfig(task="point_mass")) == "jax"
    with pytest.raises(ConfigError, match=r"TrainConfig.backend: 'warp'.*'native'"):
        TrainConfig(backend="warp")
    with pytest.raises(ConfigError, match="pure-JAX"):
        TrainConfig(task="point_mass", backend="native")
    with pytest.raises(ConfigError, match=r"set backend with TrainConfig\.backend"):
        TrainConfig(task_options=("backend=mjx",))


def test_plan_task_overrides_check_the_task_config_and_refuse_them_for_adapters():
    from apexjax.commands.plan import task_overrides

    assert task_overrides("point_mass", ["mass=2.5"])["mass"] == 2.5
    assert task_overrides("brax:ant", []) == {}  # an adapter builds with its own defaults
    with pytest.raises(ConfigError, match=r"--task-set: task 'brax:ant'.*no task overrides"):
        task_overrides("brax:ant", ["episode_length=5"])
    with pytest.raises(ConfigError, match=r"PointMassConfig\.mass"):
        task_overrides("point_mass", ["mass=heavy"])
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        task_overrides("nope", [])

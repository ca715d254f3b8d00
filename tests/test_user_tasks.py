"""Tasks of your own on the command line: ``--import MODULE``, ``apexjax.tasks`` entry points,
``$APEXJAX_TASK_MODULES``, and runs that import their recorded task modules again.

The user task is ``point_mass`` registered again under a new name from a module written
into ``tmp_path`` (pure JAX: compiles in seconds); the training config is the one of
``tests/test_train.py``, so its training step is a hit in the compilation cache.
"""

import importlib.metadata
import json
import os
import sys

import pytest
from _tiny import TINY_ITEMS

from apexjax import cli, envs
from apexjax.configs import ConfigError
from apexjax.envs import registry

TASK = "my_point_mass"
MODULE = "apexjax_test_user_tasks_mod"
SOURCE = f"""
from apexjax.envs import register
from apexjax.envs.tasks.point_mass import PointMass, PointMassConfig

register({TASK!r}, PointMass, PointMassConfig)
"""

CFG_ITEMS = TINY_ITEMS  # tests/_tiny.py: test_train.py's config as --set items


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The module that registers ``TASK``, importable (on ``sys.path``) but not imported;
    forgets the task and the module afterwards."""
    path = tmp_path / "modules"
    path.mkdir()
    (path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delenv(registry.TASK_MODULES_ENV, raising=False)
    _forget()
    yield MODULE
    _forget()


def _forget() -> None:
    """As in a fresh process: the user task unregistered, its module not imported."""
    registry._REGISTRY.pop(TASK, None)
    registry._REGISTRY.pop("ep_task", None)
    sys.modules.pop(MODULE, None)


def _train_argv(run_dir, *extra):
    argv = ["train", "--task", TASK, "--run-dir", str(run_dir), "--set", "iterations=1"]
    argv.append("--no-render")  # no video needed here
    for item in CFG_ITEMS:
        argv += ["--set", item]
    return [*argv, *extra]


def test_import_trains_and_the_run_imports_its_module_again(user_module, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"unknown task '{TASK}'.*--import MODULE"):
        envs.make(TASK)
    assert cli.main(["--import", user_module, *_train_argv(run_dir)]) == 0
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["task_modules"] == [user_module]
    assert registry.TASK_MODULES_ENV not in os.environ  # main() leaves the process as it was

    # eval, export and --resume in a "fresh process": no --import, the run names its module
    _forget()
    assert cli.main(["eval", str(run_dir), "--episodes", "2"]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["task"] == TASK
    _forget()
    assert cli.main(["export", str(run_dir), "--out", str(tmp_path / "p.npz")]) == 0
    assert (tmp_path / "p.npz").exists()
    _forget()
    argv = ["train", "--resume", "--run-dir", str(run_dir), "--set", "iterations=2", "--no-render"]
    assert cli.main(argv) == 0
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2
    capsys.readouterr()


def test_a_run_whose_task_module_is_gone_names_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"task": TASK}))
    (run_dir / "metadata.json").write_text(json.dumps({"task_modules": ["no_such_task_mod"]}))
    for argv in (
        ["eval", str(run_dir)],
        ["export", str(run_dir), "--out", str(tmp_path / "p.npz")],
        ["train", "--resume", "--run-dir", str(run_dir)],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "'no_such_task_mod'" in err and "metadata.json" in err, err


def test_import_of_a_missing_module_is_one_clear_error(capsys):
    assert cli.main(["--import", "no_such_task_mod", "presets"]) == 2
    err = capsys.readouterr().err
    assert "--import" in err and "'no_such_task_mod'" in err and "ModuleNotFoundError" in err


def test_plan_validates_a_user_task_before_compiling(user_module, capsys):
    argv = ["--import", user_module, "plan", "--task", TASK, "--task-set", "mass=heavy"]
    assert cli.main(argv) == 2
    assert "PointMassConfig.mass" in capsys.readouterr().err


def test_env_variable_modules_load_on_a_lookup_miss(user_module, monkeypatch):
    monkeypatch.setenv(registry.TASK_MODULES_ENV, f"no_such_first_mod_is_never_needed, {MODULE}")
    # the modules load in order until the name is found: the missing first one fails
    with pytest.raises(registry.TaskModuleError, match="no_such_first_mod"):
        envs.check_task(TASK)
    monkeypatch.setenv(registry.TASK_MODULES_ENV, MODULE)
    assert envs.config_class(TASK).__name__ == "PointMassConfig"
    assert envs.is_user_task(TASK)


def test_entry_points_load_lazily_by_name(user_module, monkeypatch):
    eps = [
        importlib.metadata.EntryPoint(TASK, user_module, registry.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("ep_task", user_module, registry.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("ep_broken", "no_such_ep_mod", registry.ENTRY_POINT_GROUP),
    ]
    calls = []

    def entry_points(group):
        calls.append(group)
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert {TASK, "ep_task", "ep_broken"} <= set(envs.names())  # listed before they load
    assert MODULE not in sys.modules  # listing loads nothing
    assert envs.make(TASK, episode_length=3).episode_length == 3
    assert calls == [registry.ENTRY_POINT_GROUP] * len(calls)
    # an entry point whose module registers another name, and one that is not importable
    with pytest.raises(ConfigError, match="did not register 'ep_task'"):
        envs.check_task("ep_task")
    with pytest.raises(registry.TaskModuleError, match=r"ep_broken.*no_such_ep_mod"):
        envs.check_task("ep_broken")


def test_which_tasks_are_user_tasks(user_module, register_task):
    from apexjax.envs.tasks.point_mass import PointMass, PointMassConfig

    assert not envs.is_user_task("point_mass")
    assert not envs.is_user_task("brax:ant") and envs.is_adapter("brax:ant")
    assert not envs.is_user_task(TASK)  # not registered (yet)
    register_task(TASK, PointMass, PointMassConfig)
    assert envs.is_user_task(TASK)
    # the metadata of a new run names the modules only for a user task
    os.environ[registry.TASK_MODULES_ENV] = user_module
    try:
        assert cli.with_task_modules(None, TASK) == {"task_modules": [user_module]}
        assert cli.with_task_modules({"preset": "cpu"}, "point_mass") == {"preset": "cpu"}
    finally:
        del os.environ[registry.TASK_MODULES_ENV]
    assert cli.with_task_modules(None, TASK) is None  # nothing imported: nothing to record


def test_a_registered_task_can_be_removed_again():
    from apexjax.envs.tasks.point_mass import PointMass, PointMassConfig

    envs.register("mine_for_now", PointMass, PointMassConfig)
    assert "mine_for_now" in envs.names()
    envs.unregister("mine_for_now")
    assert "mine_for_now" not in envs.names()
    with pytest.raises(envs.registry.UnknownTaskError):
        envs.make("mine_for_now")
    envs.unregister("mine_for_now")  # not registered: nothing happens
    with pytest.raises(ConfigError, match="shipped task"):
        envs.unregister("cartpole_swingup")


def test_register_refuses_adapter_names_and_non_dataclasses():
    from apexjax.envs.tasks.point_mass import PointMass, PointMassConfig

    with pytest.raises(ConfigError, match="prefixes"):
        envs.register("brax:mine", PointMass, PointMassConfig)
    with pytest.raises(TypeError, match="dataclass"):
        envs.register("mine", PointMass, object)

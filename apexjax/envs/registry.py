"""Task registry: ``make(name, **overrides)`` builds a registered task.

Each entry is a factory taking a frozen :class:`~apexjax.envs.base.TaskConfig`
subclass; overrides are that config's fields and are validated before any model
is loaded. Prefixed names wrap other libraries' envs (see :mod:`apexjax.envs.adapters`):
``"brax:<env>"`` and ``"playground:<env>"``.

Where a name is looked up: the tasks registered so far (:func:`register`), the shipped
tasks (their modules are imported on first use), and then, only for a name still unknown,
two places a task of your own can come from without an explicit import:

- an installed package's entry points in the group ``apexjax.tasks``: the entry point's
  name is the task name, its value the module whose import registers it, e.g. in
  ``pyproject.toml``::

      [project.entry-points."apexjax.tasks"]
      my_task = "my_package.tasks"

  Entry points are loaded lazily, by name, when that name is looked up: a broken or slow
  plugin costs nothing to the commands that do not use it, and the same lookup serves
  ``make`` from Python, the command line and its child processes.
- the modules named in ``$APEXJAX_TASK_MODULES`` (comma-separated), imported in order.
  The command line's ``--import MODULE`` imports its modules at start-up and adds them to
  this variable for the command's own child processes (the benchmark's).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable
from typing import Any

from apexjax.configs import ConfigError
from apexjax.envs.base import Task, TaskConfig
from apexjax.envs.mujoco_task import BACKENDS

__all__ = [
    "ENTRY_POINT_GROUP",
    "TASK_MODULES_ENV",
    "TaskModuleError",
    "UnknownTaskError",
    "check_task",
    "config_class",
    "default_episode_length",
    "env_task_modules",
    "import_task_modules",
    "is_adapter",
    "is_user_task",
    "make",
    "names",
    "planner_beta",
    "register",
    "unregister",
]

#: entry point group of installed packages' tasks (name: task name, value: its module).
ENTRY_POINT_GROUP = "apexjax.tasks"
#: environment variable: comma-separated modules imported when a task name is unknown.
TASK_MODULES_ENV = "APEXJAX_TASK_MODULES"


class UnknownTaskError(ConfigError, KeyError):
    """A task name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class TaskModuleError(ConfigError):
    """A module that should register tasks (``--import``, a run's recorded
    ``task_modules``, ``$APEXJAX_TASK_MODULES``, an entry point) cannot be imported; the
    message names the module, where it was asked for, and the cause."""


# name -> (module that defines it, factory, config class). Modules are imported on
# first use so that importing apexjax never loads a model.
_BUILTIN_MODULES = {
    "pendulum_swingup": "apexjax.envs.tasks.pendulum",
    "cartpole_swingup": "apexjax.envs.tasks.cartpole",
    "reacher": "apexjax.envs.tasks.reacher",
    "halfcheetah_running": "apexjax.envs.tasks.halfcheetah",
    "humanoid_standup": "apexjax.envs.tasks.humanoid",
    "point_mass": "apexjax.envs.tasks.point_mass",
    "door": "apexjax.envs.tasks.door",
    "fetch_pick_and_place": "apexjax.envs.tasks.fetch",
}
_ADAPTER_PREFIXES = ("brax:", "playground:")
_REGISTRY: dict[str, tuple[Callable[[Any], Task], type[TaskConfig]]] = {}


def register(name: str, factory: Callable[[Any], Task], config_cls: type[TaskConfig]) -> None:
    """Registers ``factory(config) -> Task`` under ``name`` with its config class.

    A name registered again replaces the earlier entry. The command line finds a task
    registered by your own module through ``apexjax --import MODULE`` or an
    ``apexjax.tasks`` entry point (see the module docstring).
    """
    if not isinstance(name, str) or not name or name.startswith(_ADAPTER_PREFIXES):
        raise ConfigError(
            f"register: the task name must be a non-empty str without the prefixes "
            f"{list(_ADAPTER_PREFIXES)}, got {name!r}"
        )
    if not callable(factory):
        raise TypeError(f"register({name!r}): factory must be callable, got {factory!r}")
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"register({name!r}): config_cls must be a dataclass, got {config_cls!r}")
    _REGISTRY[name] = (factory, config_cls)


def unregister(name: str) -> None:
    """Removes the task registered under ``name`` (a test's, or one of your own); a name
    that is not registered is left alone.

    Raises:
      ConfigError: ``name`` is a shipped task (those stay registered).
    """
    if name in _BUILTIN_MODULES:
        raise ConfigError(f"unregister: {name!r} is a shipped task and stays registered")
    _REGISTRY.pop(name, None)


def is_adapter(name: str) -> bool:
    """Whether ``name`` wraps another library's env (``"brax:..."``, ``"playground:..."``):
    such a task has no config class; its overrides are the adapter's keywords and the env's
    own arguments (:func:`make`)."""
    return name.startswith(_ADAPTER_PREFIXES)


def is_user_task(name: str) -> bool:
    """Whether ``name`` is registered by code outside apexjax: not a shipped task (or a
    shipped name registered again with another factory), not an adapter. A run of such a
    task needs the module that registers it imported again to be evaluated or resumed."""
    if is_adapter(name) or name not in _REGISTRY:
        return False
    if name not in _BUILTIN_MODULES:
        return True
    return getattr(_REGISTRY[name][0], "__module__", None) != _BUILTIN_MODULES[name]


def import_task_modules(modules: Iterable[str], *, source: str = "--import") -> list[str]:
    """Imports ``modules`` in order (their ``register`` calls take effect); returns them.

    Args:
      modules: dotted module names (importable from ``sys.path``).
      source: where the names come from, for the error message (``"--import"``, a run's
        ``metadata.json``, ...).

    Raises:
      TaskModuleError: a module cannot be imported (not found, or an import inside it
        fails); the message names the module, ``source`` and the cause. Other errors
        raised by the module's own code propagate with their traceback.
    """
    done = []
    for module in modules:
        if not isinstance(module, str) or not module.strip():
            raise TaskModuleError(f"{source}: expected a module name, got {module!r}")
        module = module.strip()
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise TaskModuleError(
                f"{source}: cannot import task module {module!r} ({type(e).__name__}: {e}); "
                "put it on PYTHONPATH or install its package"
            ) from None
        done.append(module)
    return done


def env_task_modules() -> list[str]:
    """The modules named in ``$APEXJAX_TASK_MODULES`` (comma-separated), in order."""
    text = os.environ.get(TASK_MODULES_ENV, "")
    return [m.strip() for m in text.split(",") if m.strip()]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    try:
        return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken distribution's metadata must not break every lookup
        return []


def _find_elsewhere(name: str) -> None:
    """Loads the entry points named ``name``, then the ``$APEXJAX_TASK_MODULES`` modules,
    until ``name`` is registered (a name not found anywhere stays unregistered)."""
    for ep in _entry_points():
        if ep.name != name:
            continue
        try:
            ep.load()
        except ImportError as e:
            raise TaskModuleError(
                f"task {name!r}: entry point {ep.name} = {ep.value!r} (group "
                f"{ENTRY_POINT_GROUP!r}) cannot be imported ({type(e).__name__}: {e})"
            ) from None
        if name not in _REGISTRY:
            raise ConfigError(
                f"task {name!r}: entry point {ep.name} = {ep.value!r} (group "
                f"{ENTRY_POINT_GROUP!r}) was loaded but did not register {name!r}; its module "
                f"must call apexjax.envs.register({name!r}, ...) when imported"
            )
        return
    for module in env_task_modules():
        import_task_modules([module], source=f"${TASK_MODULES_ENV}")
        if name in _REGISTRY:
            return


def names() -> list[str]:
    """Every known task name, sorted (entry-point tasks included, before they load)."""
    plugins = {ep.name for ep in _entry_points()}
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES) | plugins)


def _lookup(name: str) -> tuple[Callable[[Any], Task], type[TaskConfig]]:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        _find_elsewhere(name)
    if name not in _REGISTRY:
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {', '.join(names())}. A task of your own: "
            "apexjax.envs.register it in a module and, on the command line, name that "
            f"module with --import MODULE (or declare it as an {ENTRY_POINT_GROUP!r} entry "
            "point)"
        )
    return _REGISTRY[name]


def check_task(name: str) -> None:
    """Raises unless ``name`` can be looked up: a registered, shipped or entry-point task
    (importing its module), or an adapter name (``"brax:"``/``"playground:"`` + an env,
    which is checked when the task is built).

    Raises:
      UnknownTaskError: unknown task (the message lists the known ones).
      TaskModuleError: the module that should register it cannot be imported.
    """
    if not isinstance(name, str):
        raise UnknownTaskError(f"a task name must be a str, got {name!r}")
    if not is_adapter(name):
        _lookup(name)


def config_class(name: str) -> type[TaskConfig]:
    """The config dataclass of task ``name`` (its fields are the allowed overrides)."""
    if is_adapter(name):
        raise ConfigError(
            f"task {name!r} wraps another library's env and has no config class; its "
            "overrides are episode_length, cost_fn, success_fn, action_bounds and the "
            "env's own arguments (see apexjax.envs.adapters)"
        )
    return _lookup(name)[1]


def planner_beta(name: str) -> float:
    """The colored-noise exponent β task ``name`` plans with by default: its config
    class's ``planner_beta`` (:class:`~apexjax.envs.base.TaskConfig`; 2.0 for a task that
    sets none and for the Brax/Playground adapters). The one place this fact lives:
    :class:`~apexjax.loop.TrainConfig`, ``apexjax plan``, the presets and the benchmarks
    all read it here.

    Raises:
      UnknownTaskError: unknown task.
    """
    if is_adapter(name):
        return float(TaskConfig.planner_beta)
    return float(_lookup(name)[1].planner_beta)


def default_episode_length(name: str) -> int:
    """Control steps of one episode of task ``name`` with its config's defaults (the
    adapters: their own default, :data:`apexjax.envs.adapters.BRAX_EPISODE_LENGTH`).

    Raises:
      UnknownTaskError: unknown task.
    """
    if is_adapter(name):
        from apexjax.envs.adapters import BRAX_EPISODE_LENGTH

        return BRAX_EPISODE_LENGTH
    return int(_lookup(name)[1]().episode_length)


def make(name: str, **overrides: Any) -> Task:
    """Builds task ``name``; ``overrides`` set fields of its config.

    ``backend`` picks the physics of a MuJoCo task: ``"mjx"``, ``"native"`` or
    ``"auto"`` (the default: native where JAX's default backend is the CPU, MJX
    elsewhere). A pure-JAX task (``point_mass``) has no physics backend, and the
    Brax/Playground adapters run on MJX only: for them only ``"auto"`` (or ``"mjx"`` for
    an adapter) is accepted.

    ``"brax:<env>"`` / ``"playground:<env>"`` wrap that library's env; their overrides
    are the adapter's keywords (``episode_length``, ``cost_fn``, ``success_fn``,
    ``action_bounds``) and the env's own arguments.

    Raises:
      UnknownTaskError: unknown task (the message lists the known ones).
      ConfigError: an unknown override or an invalid value (the message names
        the field and what is allowed).
    """
    if is_adapter(name):
        from apexjax.envs import adapters  # lazy: imports Brax / Playground on use

        backend = overrides.pop("backend", "auto")
        if backend not in BACKENDS:
            raise ConfigError(
                f"backend: {backend!r} is not allowed; choose one of {list(BACKENDS)}"
            )
        if backend == "native":
            raise ConfigError(
                f"task {name!r}: backend 'native' is not available for a wrapped "
                "Brax/Playground env (it steps MJX itself); use backend='mjx' or 'auto'"
            )
        prefix, env_name = name.split(":", 1)
        build = adapters.make_brax if prefix == "brax" else adapters.make_playground
        return build(env_name, **overrides)
    factory, config_cls = _lookup(name)
    allowed = [f.name for f in dataclasses.fields(config_cls)]
    if "backend" in overrides and "backend" not in allowed:
        backend = overrides.pop("backend")
        if backend not in BACKENDS:
            raise ConfigError(
                f"backend: {backend!r} is not allowed; choose one of {list(BACKENDS)}"
            )
        if backend != "auto":
            raise ConfigError(
                f"task {name!r}: backend {backend!r} is not available; the task is pure JAX "
                "and has no physics backend (use backend='auto')"
            )
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ConfigError(
            f"task {name!r}: unknown override(s) {unknown}; allowed: {', '.join(allowed)}"
        )
    return factory(config_cls(**overrides))

"""Task registry: ``make(name, **overrides)`` builds a registered task.

Each entry is a factory taking a frozen :class:`~apexjax.envs.base.TaskConfig`
subclass; overrides are that config's fields and are validated before any model
is loaded. Prefixed names wrap other libraries' envs (see :mod:`apexjax.envs.adapters`):
``"brax:<env>"`` and ``"playground:<env>"``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from apexjax.configs import ConfigError
from apexjax.envs.base import Task, TaskConfig
from apexjax.envs.mujoco_task import BACKENDS

__all__ = ["UnknownTaskError", "register", "make", "names", "config_class"]


class UnknownTaskError(ConfigError, KeyError):
    """A task name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


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
    """Registers ``factory(config) -> Task`` under ``name`` with its config class."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"register({name!r}): config_cls must be a dataclass, got {config_cls!r}")
    _REGISTRY[name] = (factory, config_cls)


def names() -> list[str]:
    """Every known task name, sorted."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def _lookup(name: str) -> tuple[Callable[[Any], Task], type[TaskConfig]]:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
    return _REGISTRY[name]


def config_class(name: str) -> type[TaskConfig]:
    """The config dataclass of task ``name`` (its fields are the allowed overrides)."""
    if name.startswith(_ADAPTER_PREFIXES):
        raise ConfigError(
            f"task {name!r} wraps another library's env and has no config class; its "
            "overrides are episode_length, cost_fn, success_fn, action_bounds and the "
            "env's own arguments (see apexjax.envs.adapters)"
        )
    return _lookup(name)[1]


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
    if name.startswith(_ADAPTER_PREFIXES):
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

"""Tasks: MJX models with planning costs, a registry, and adapters for Brax and Playground."""

from apexjax.envs.base import MjxTask, State, Task, TaskConfig, tree_is_finite
from apexjax.envs.registry import config_class, make, names, register

__all__ = [
    "MjxTask",
    "State",
    "Task",
    "TaskConfig",
    "config_class",
    "make",
    "names",
    "register",
    "tree_is_finite",
]

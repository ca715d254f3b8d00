"""Tasks: MuJoCo models with planning costs on MJX or native MuJoCo, a registry, and
adapters for Brax and Playground."""

from apexjax.envs.base import State, Task, TaskConfig, tree_is_finite
from apexjax.envs.mujoco_task import BACKENDS, MujocoTask, MujocoTaskConfig, resolve_backend
from apexjax.envs.native import NativeData, NotDifferentiableError
from apexjax.envs.registry import (
    check_task,
    config_class,
    default_episode_length,
    is_adapter,
    is_user_task,
    make,
    names,
    planner_beta,
    register,
    unregister,
)

#: the former name of :class:`MujocoTask`, from when MJX was its only backend.
MjxTask = MujocoTask

__all__ = [
    "BACKENDS",
    "MjxTask",
    "MujocoTask",
    "MujocoTaskConfig",
    "NativeData",
    "NotDifferentiableError",
    "State",
    "Task",
    "TaskConfig",
    "check_task",
    "config_class",
    "default_episode_length",
    "is_adapter",
    "is_user_task",
    "make",
    "names",
    "planner_beta",
    "register",
    "resolve_backend",
    "tree_is_finite",
    "unregister",
]

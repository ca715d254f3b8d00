"""The tiny training configs the tests share: every piece of the loop runs, in seconds.

``tiny_config(task, **overrides)``: 2 environments, 6-step episodes, iCEM N=8/K=2/h=5 with
2 iterations and the task's own β, a 16-unit policy, 5 SGD steps of batch 16, ``progress``
guidance with λ0 = 0.1; any TrainConfig field overrides (sub-configs whole).
``TINY_CARTPOLE``: the trained run that the command and script tests read (the
``tiny_cartpole_run`` fixture in conftest.py trains it once per test process).
"""

from apexjax import envs
from apexjax.guidance import GuidanceConfig
from apexjax.loop import TrainConfig
from apexjax.planning.icem import ICEMConfig
from apexjax.policy import PolicyConfig


def tiny_planner(task: str) -> ICEMConfig:
    """iCEM at the least that exercises every part of it, with ``task``'s own β."""
    return ICEMConfig(population=8, elites=2, horizon=5, iterations=2, beta=envs.planner_beta(task))


def tiny_config(task: str = "point_mass", **overrides) -> TrainConfig:
    """A TrainConfig that trains ``task`` in seconds (see the module docstring)."""
    kw = dict(
        task=task,
        iterations=1,
        num_envs=2,
        episode_length=6,
        sgd_steps=5,
        dataset_capacity=100,
        planner=tiny_planner(task),
        policy=PolicyConfig(hidden=(16,), batch_size=16),
        guidance=GuidanceConfig("progress", 0.1),
    )
    kw.update(overrides)
    return TrainConfig(**kw)


#: :func:`tiny_config`'s values as ``apexjax train --set`` items (iterations and task apart)
TINY_ITEMS = [
    "num_envs=2",
    "episode_length=6",
    "sgd_steps=5",
    "dataset_capacity=100",
    "planner.population=8",
    "planner.elites=2",
    "planner.horizon=5",
    "planner.iterations=2",
    "policy.hidden=[16]",
    "policy.batch_size=16",
    "guidance.mode=progress",
    "guidance.weight=0.1",
]


#: one iteration of cart-pole on native physics, 20-step episodes, guidance as configured
#: by default: the run that ``apexjax compare``, ``apexjax render`` and the experiment
#: scripts are tested on (conftest.py's ``tiny_cartpole_run``)
TINY_CARTPOLE = tiny_config(
    "cartpole_swingup",
    episode_length=20,
    dataset_capacity=200,
    backend="native",
    guidance=GuidanceConfig(),
)

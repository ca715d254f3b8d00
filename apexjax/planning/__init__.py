"""Planning: colored noise, iCEM as ``init``/``plan`` over a PlannerState, rollouts, MPC."""

from apexjax.planning.icem import (
    ICEMConfig,
    PlanInfo,
    PlannerState,
    cem_config,
    init,
    plan,
    population_sizes,
    reset,
    simulated_per_step,
    with_hyperparams,
)
from apexjax.planning.noise import colored_noise
from apexjax.planning.rollout import (
    rollout_closed_loop,
    rollout_open_loop,
    rollout_open_loop_batch,
)

__all__ = [
    "ICEMConfig",
    "PlanInfo",
    "PlannerState",
    "cem_config",
    "colored_noise",
    "init",
    "plan",
    "population_sizes",
    "reset",
    "rollout_closed_loop",
    "rollout_open_loop",
    "rollout_open_loop_batch",
    "simulated_per_step",
    "with_hyperparams",
]

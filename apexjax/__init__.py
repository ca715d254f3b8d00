"""apexjax: APEX (policies distilled from the iCEM planner) on MuJoCo MJX, in JAX.

Subpackages: :mod:`apexjax.envs` (tasks), :mod:`apexjax.planning` (colored noise,
iCEM, rollouts, MPC). Importing apexjax has no side effects: it does not touch JAX
configuration or XLA flags.
"""

__version__ = "0.1.0"

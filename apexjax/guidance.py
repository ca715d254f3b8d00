"""Guidance: a per-step cost pulling planner candidates toward the policy, and its weight.

The guidance cost of one imagined step is ``λ · mean_j (â_j − π̂(o(s))_j)²`` where ``â`` and
``π̂`` are the candidate's and the policy's actions normalised to [−1, 1] by the task's bounds
and ``o(s)`` is the observation of the imagined state ``s`` the action is taken in. It is
handed to the planner through its ``extra_cost`` extension point.

How λ adapts (REFERENCE.md leaves the paper's formula open; each reading is a mode):

- ``off``: λ = 0 (no guidance).
- ``fixed``: λ = λ0.
- ``progress``: λ = λ0 · r with r = clip(1 − (C_π − C*) / (|C*| + ε), 0, 1),
  set once per outer iteration from whole episodes: C_π is the mean episode cost of the policy
  acting alone (the previous iteration's evaluation) and C* the lowest mean episode cost the
  expert has reached so far in the run. r is 0 while the policy is worse than the best expert
  by more than the expert's own cost magnitude, and rises to 1 as the policy catches up. Both
  inputs are measured in the real environment and C* only ever improves, so guidance cannot
  drag the expert down and then read its own damage as "the policy caught up".
- ``gap``: λ = λ0 · r with r = clip((C_0 − C_π) / (C_0 − C*), 0, 1), set once per outer
  iteration like ``progress``, where C_0 is the mean episode cost of the untrained policy
  acting alone (measured once, in the first iteration): r is the fraction of the gap between
  the untrained policy and the best expert that the policy has closed. Unlike ``progress``
  it does not depend on where the cost's zero lies (adding a constant to every step's cost
  leaves it unchanged), and it rises as soon as the policy improves; ``progress`` stays at 0
  until the policy's cost is within |C*| of the expert's (measured: the default cart-pole
  ``make run`` never left λ = 0, with the policy at -50 and the expert at -18).
  Measured worse than ``progress`` on cart-pole (3 seeds): switched on early, it dragged the
  expert from -28 to -70 (docs/experiments.md).
- ``progress_gap`` (the default): λ = λ0 · min(r_progress, r_gap), the two readings above
  from the same C*, C_π and C_0: guidance only where both say the policy has caught up. On a sparse task
  the ``progress`` ratio is near 1 as soon as the expert succeeds once, because a failing
  policy's cost is close to the expert's in relative terms (measured on Fetch Pick&Place,
  costs 0-50: C* = 47, C_π = 50 gave r = 0.94 with the policy failing every episode), and it
  is exactly 1 while expert and policy both fail (C* = C_π: λ = λ0, full guidance toward an
  untrained policy); ``gap`` is 0 in both cases, as no part of the gap from C_0 is closed.
  Where the expert beats the untrained policy from the start (the dense tasks), ``gap`` is the
  larger of the two and this is ``progress``: on cart-pole (3 seeds, docs/experiments.md)
  the two gave the same runs bit for bit, while on sparse Fetch (one seed, paper planner,
  the same start states) the expert succeeded in 4 of the 12 episodes of iterations 2-7 at
  λ = 0, where ``progress`` guided it at λ = 1 toward a failing policy and it succeeded in 1.
- ``relative``: the same formula as ``progress`` per control step, from the previous plan: C_π the task cost
  of the policy's own candidate, C* the best candidate's. Measured weakness: early on, when
  every candidate is equally poor (a pendulum hanging down), r ≈ 1, λ = λ0, and the planner
  collapses onto the untrained policy, which keeps r ≈ 1.
- ``normalized``: λ = min(λ0 · |C_best| / (D_best + ε), ``max_weight``), with D_best the
  unweighted guidance distance (summed over the horizon) of the best candidate: the guidance
  stays a fixed fraction λ0 of the task cost whatever the scale of either. Without the cap it
  diverges as the planner follows the policy (D_best → 0); measured: λ reached 400 on pendulum.

In every mode but ``off``, λ is 0 for the first ``warmup_iterations`` outer iterations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, get_args

import jax
import jax.numpy as jnp

from apexjax.configs import check_choice, check_float, check_int
from apexjax.envs.base import State, Task
from apexjax.policy import normalize_action  # the one action normalisation (re-exported)

__all__ = [
    "GuidanceConfig",
    "GuidanceMode",
    "adaptive_weight",
    "guidance_distance",
    "initial_weight",
    "make_guidance_cost",
    "next_iteration_weight",
    "normalize_action",
]

GuidanceMode = Literal["off", "fixed", "progress", "gap", "progress_gap", "relative", "normalized"]


@dataclasses.dataclass(frozen=True)
class GuidanceConfig:
    """Attributes:
    mode: how λ is set each control step (see the module docstring).
    weight: λ0, the base weight (>= 0).
    eps: ε in the adaptive formulas (> 0), guards divisions by small costs.
    max_weight: upper bound on λ in ``normalized`` mode (> 0).
    warmup_iterations: outer iterations with λ = 0 at the start of a run (>= 0).
    """

    mode: GuidanceMode = "progress_gap"
    weight: float = 1.0
    eps: float = 1e-3
    max_weight: float = 10.0
    warmup_iterations: int = 0

    def __post_init__(self) -> None:
        check_choice("GuidanceConfig.mode", self.mode, get_args(GuidanceMode))
        check_float("GuidanceConfig.weight", self.weight, ge=0)
        check_float("GuidanceConfig.eps", self.eps, gt=0)
        check_float("GuidanceConfig.max_weight", self.max_weight, gt=0)
        check_int("GuidanceConfig.warmup_iterations", self.warmup_iterations, ge=0)

    @property
    def per_iteration(self) -> bool:
        """Whether λ is set once per outer iteration (``progress``, ``gap``,
        ``progress_gap``) rather than per control step."""
        return self.mode in ("progress", "gap", "progress_gap")

    @property
    def measures_untrained(self) -> bool:
        """Whether a run measures C_0, the untrained policy's episode cost, in its first
        iteration (``gap``, ``progress_gap``)."""
        return self.mode in ("gap", "progress_gap")


def guidance_distance(
    action: jax.Array, policy_action: jax.Array, low: jax.Array, high: jax.Array
) -> jax.Array:
    """Mean squared difference of normalised actions, ``[..., A] -> [...]``."""
    diff = normalize_action(action, low, high) - normalize_action(policy_action, low, high)
    return jnp.mean(diff**2, axis=-1)


def make_guidance_cost(
    task: Task, policy_fn: Callable[[jax.Array], jax.Array], weight: jax.Array
) -> Callable[[State, jax.Array, State], jax.Array]:
    """Guidance as a planner ``extra_cost(state, action, next_state) -> scalar``.

    Args:
      task: gives the observation of imagined states and the action bounds.
      policy_fn: ``obs [O] -> action [A]`` (a closure over the current policy parameters;
        it may hold traced values).
      weight: λ, a scalar (traced: changing it never recompiles).
    """
    low = jnp.asarray(task.action_low)
    high = jnp.asarray(task.action_high)

    def weighted(args: tuple[State, jax.Array]) -> jax.Array:
        state, action = args
        pi = policy_fn(task.observation(state))
        return jnp.asarray(weight * guidance_distance(action, pi, low, high), jnp.float32)

    def extra_cost(state: State, action: jax.Array, next_state: State) -> jax.Array:
        del next_state
        # At λ = 0 (the adaptive modes while the policy lags, every warm-up iteration) the
        # policy is not evaluated at all: on half-cheetah that network pass at every
        # imagined state costs a third of the planner's time. λ is one scalar for the whole
        # batch in the per-iteration modes, so this stays a branch under vmap; where λ is
        # batched (per-step modes) vmap turns it into a select and both sides run.
        return jax.lax.cond(
            weight > 0, weighted, lambda _: jnp.zeros((), jnp.float32), (state, action)
        )

    return extra_cost


def adaptive_weight(
    config: GuidanceConfig,
    *,
    best_task_cost: jax.Array,
    policy_task_cost: jax.Array | None = None,
    best_distance: jax.Array | None = None,
    untrained_task_cost: jax.Array | None = None,
) -> jax.Array:
    """λ from measured costs (float32 scalar, always finite, >= 0).

    ``relative`` and ``normalized`` read the previous plan (per control step); ``progress``,
    ``gap`` and ``progress_gap`` read whole episodes (once per outer iteration). Warm-up is
    applied by the caller.

    Args:
      config: the mode and λ0.
      best_task_cost: ``relative``/``normalized``: task cost of the best candidate (summed
        over the horizon); per-iteration modes: C*, the best mean expert episode cost so far.
      policy_task_cost: ``relative``: task cost of the policy's own candidate;
        per-iteration modes: C_π, the mean episode cost of the policy acting alone.
      best_distance: unweighted guidance distance of the best candidate, summed over the
        horizon (``normalized`` mode).
      untrained_task_cost: C_0, the mean episode cost of the untrained policy (``gap``,
        ``progress_gap``).
    """
    lam0 = jnp.float32(config.weight)
    eps = jnp.float32(config.eps)
    if config.mode == "off":
        return jnp.float32(0.0)
    if config.mode == "fixed":
        return lam0
    best = jnp.asarray(best_task_cost, jnp.float32)
    if config.mode in ("relative", "progress"):
        if policy_task_cost is None:
            raise ValueError(f"adaptive_weight(mode={config.mode!r}) needs policy_task_cost")
        pol = jnp.asarray(policy_task_cost, jnp.float32)
        lam = lam0 * _progress_ratio(best, pol, eps)
    elif config.mode in ("gap", "progress_gap"):
        if policy_task_cost is None or untrained_task_cost is None:
            raise ValueError(
                f"adaptive_weight(mode={config.mode!r}) needs policy_task_cost and "
                "untrained_task_cost"
            )
        pol = jnp.asarray(policy_task_cost, jnp.float32)
        ref = jnp.asarray(untrained_task_cost, jnp.float32)
        r = jnp.clip((ref - pol) / jnp.maximum(ref - best, eps), 0.0, 1.0)
        if config.mode == "progress_gap":
            r = jnp.minimum(r, _progress_ratio(best, pol, eps))
        lam = lam0 * r
    else:
        if best_distance is None:
            raise ValueError("adaptive_weight(mode='normalized') needs best_distance")
        dist = jnp.asarray(best_distance, jnp.float32)
        lam = jnp.minimum(lam0 * jnp.abs(best) / (dist + eps), jnp.float32(config.max_weight))
    return jnp.where(jnp.isfinite(lam), lam, 0.0)


def _progress_ratio(best: jax.Array, pol: jax.Array, eps: jax.Array) -> jax.Array:
    """r = clip(1 − (C_π − C*) / (|C*| + ε), 0, 1) (``progress``, ``relative``)."""
    return jnp.clip(1.0 - (pol - best) / (jnp.abs(best) + eps), 0.0, 1.0)


def initial_weight(config: GuidanceConfig, stored: jax.Array, on: jax.Array | bool) -> jax.Array:
    """λ at the first step of an episode: the stored per-iteration λ (the per-iteration
    modes: a run's ``TrainState.guidance_weight``), λ0 (``fixed``) or 0 (``off`` and the
    per-step modes, which start unguided and adapt plan by plan); 0 while ``on`` is False
    (guidance warm-up)."""
    if config.per_iteration:
        lam = jnp.asarray(stored, jnp.float32)
    elif config.mode == "fixed":
        lam = jnp.float32(config.weight)
    else:
        lam = jnp.float32(0.0)
    return jnp.where(on, lam, 0.0)


def next_iteration_weight(
    config: GuidanceConfig,
    stored: jax.Array,
    *,
    best_expert_cost: jax.Array,
    policy_cost: jax.Array,
    untrained_policy_cost: jax.Array,
) -> jax.Array:
    """The λ an outer iteration stores for the next one: in the per-iteration modes
    :func:`adaptive_weight` of the episode costs (C* the best mean expert episode cost so far,
    C_π the policy alone after this iteration's update, C_0 the untrained policy's), 0 while
    no expert episode has a finite cost; the other modes keep ``stored`` (unused by them)."""
    if not config.per_iteration:
        return jnp.asarray(stored, jnp.float32)
    lam = adaptive_weight(
        config,
        best_task_cost=best_expert_cost,
        policy_task_cost=policy_cost,
        untrained_task_cost=untrained_policy_cost,
    )
    return jnp.where(jnp.isfinite(best_expert_cost), lam, 0.0)

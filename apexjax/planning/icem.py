"""iCEM (Pinneri et al., CoRL 2020) as a pure ``init`` / ``plan`` pair over a PlannerState.

One call of :func:`plan` is one control step of the reference algorithm (see the
project's reference notes): ``iterations`` rounds of sample -> simulate -> refit, with
colored noise, a decaying population, elites kept across iterations and shifted across
control steps, the mean evaluated at the last iteration, and momentum. Every option is a
field of :class:`ICEMConfig`; :func:`cem_config` is the authors' plain CEM baseline
(samples from a Gaussian truncated to the bounds, a fixed population, no memory, no
colored noise).

Static vs traced: fields that fix shapes (population, decay, iterations, elites,
horizon, keep_fraction, the switches, num_extra_candidates) are static, so the config is
hashable and is closed over / passed as a static argument. ``beta``, ``momentum`` and
``init_std`` are copied into the PlannerState by :func:`init` and :func:`plan` reads only
those traced copies: to tune them without recompiling, keep the compiled config and
change the state with :func:`with_hyperparams`.

Extension points (used by APEX, general otherwise):
  * ``extra_candidates`` ``[M, h, A]`` (M = ``num_extra_candidates``): caller sequences,
    e.g. policy rollouts, clipped and added to EVERY iteration's population.
  * ``extra_cost(state, action, next_state) -> scalar``: added to the task cost at each
    imagined step, e.g. a guidance cost; a closure, it may capture traced values.

Non-finite rollouts get cost +inf: never elites, never in the mean/std. If every
candidate is non-finite, the action is the (finite, clipped) mean's first action and
``info.all_nonfinite`` is set.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

from apexjax.configs import ConfigError, check_bool, check_choice, check_float, check_int
from apexjax.envs.base import State, Task
from apexjax.planning.noise import NORMALIZATIONS, colored_noise
from apexjax.planning.rollout import ExtraCost, rollout_open_loop_batch

__all__ = [
    "ICEMConfig",
    "PlanInfo",
    "PlannerState",
    "cem_config",
    "init",
    "num_keep",
    "plan",
    "population_sizes",
    "reset",
    "sample_population",
    "simulated_per_step",
    "with_hyperparams",
]


@dataclasses.dataclass(frozen=True)
class ICEMConfig:
    """iCEM options (defaults: the authors' low-budget configuration).

    Attributes:
      population: N, sequences sampled at the first iteration.
      decay: gamma >= 1; iteration i samples max(2K, int(N_{i-1} / gamma)).
      iterations: I, sample/refit rounds per control step.
      elites: K, sequences the distribution is refit to (2 <= K <= N/2).
      horizon: h, planning horizon in control steps.
      beta: colored-noise exponent (0 = white); traced.
      keep_fraction: xi; int(K * xi) elites are kept / shifted.
      keep_elites: add the previous iteration's best int(K*xi) elites (with their costs).
      shift_elites: at the first iteration, add the previous control step's best
        int(K*xi) elites shifted one step, each with a freshly sampled last action.
      use_mean_actions: replace one sample of the last iteration by the mean.
      momentum: alpha in [0, 1): new = (1 - alpha) * elite stat + alpha * old; traced.
      init_std: std at the start of each step, as a fraction of (high - low)/2; traced.
      execute: first action of the "best" sequence seen, or of the "mean".
      cost_aggregation: per-sequence cost: "sum" over time, "min" over time, or "final".
      num_extra_candidates: M, rows of caller-supplied ``extra_candidates``.
      sampling: "clip": mean + std * noise, clipped to the bounds (iCEM); "truncated": a
        Gaussian truncated to the bounds, white noise only (the authors' plain CEM).
      noise_normalization: "exact": unit-variance colored noise; "colorednoise": the
        scale of the ``colorednoise`` package the authors sampled with (the same spectrum,
        a marginal std of about 1.03 at beta 0.25 and 1.1-1.2 at beta >= 2.5 for h = 30,
        i.e. wider exploration at the same init_std).
    """

    population: int = 40
    decay: float = 1.25
    iterations: int = 3
    elites: int = 10
    horizon: int = 30
    beta: float = 2.0
    keep_fraction: float = 0.3
    keep_elites: bool = True
    shift_elites: bool = True
    use_mean_actions: bool = True
    momentum: float = 0.1
    init_std: float = 0.5
    execute: Literal["best", "mean"] = "best"
    cost_aggregation: Literal["sum", "min", "final"] = "sum"
    num_extra_candidates: int = 0
    sampling: Literal["clip", "truncated"] = "clip"
    noise_normalization: Literal["exact", "colorednoise"] = "exact"

    def __post_init__(self) -> None:
        c = "ICEMConfig"
        check_int(f"{c}.population", self.population, ge=4, hint="at least 2 elites, K <= N/2")
        check_float(f"{c}.decay", self.decay, ge=1, hint="the population never grows")
        check_int(f"{c}.iterations", self.iterations, ge=1)
        half = self.population // 2
        check_int(f"{c}.elites", self.elites, ge=2, le=half, hint=f"population/2 = {half}")
        check_int(f"{c}.horizon", self.horizon, ge=1)
        check_float(f"{c}.beta", self.beta, ge=0, le=10, hint="0 = white noise")
        check_float(f"{c}.keep_fraction", self.keep_fraction, ge=0, le=1)
        for name in ("keep_elites", "shift_elites", "use_mean_actions"):
            check_bool(f"{c}.{name}", getattr(self, name))
        check_float(f"{c}.momentum", self.momentum, ge=0, lt=1)
        check_float(f"{c}.init_std", self.init_std, gt=0)
        check_choice(f"{c}.execute", self.execute, ("best", "mean"))
        check_choice(f"{c}.cost_aggregation", self.cost_aggregation, ("sum", "min", "final"))
        check_int(f"{c}.num_extra_candidates", self.num_extra_candidates, ge=0)
        check_choice(f"{c}.sampling", self.sampling, ("clip", "truncated"))
        if self.sampling == "truncated" and self.beta != 0.0:
            raise ConfigError(
                f"{c}.beta: got {self.beta!r}; sampling='truncated' draws white noise: set beta=0"
            )
        check_choice(f"{c}.noise_normalization", self.noise_normalization, NORMALIZATIONS)


def cem_config(**overrides: object) -> ICEMConfig:
    """The authors' plain CEM baseline (their ``MpcCemStd``), ``overrides`` on top: samples
    from a Gaussian truncated to the action bounds (white noise), the same population at
    every iteration (no decay), no elite memory (neither kept nor shifted), no mean action,
    no momentum; executes the best sequence's first action.

    ``cem_config(sampling="clip", decay=1.25)`` is the variant that clips instead and keeps
    iCEM's population decay (iCEM with its improvements off).
    """
    base = dict(
        beta=0.0,
        decay=1.0,
        sampling="truncated",
        keep_elites=False,
        shift_elites=False,
        use_mean_actions=False,
        momentum=0.0,
    )
    base.update(overrides)
    return ICEMConfig(**base)  # type: ignore[arg-type]


def population_sizes(config: ICEMConfig) -> tuple[int, ...]:
    """Sampled sequences per iteration: N, then max(2K, int(prev / gamma))."""
    sizes = [config.population]
    for _ in range(1, config.iterations):
        sizes.append(max(2 * config.elites, int(sizes[-1] / config.decay)))
    return tuple(sizes)


def num_keep(config: ICEMConfig) -> int:
    """int(K * xi): elites kept across iterations / shifted across control steps."""
    return int(config.elites * config.keep_fraction)


def _num_shift(config: ICEMConfig) -> int:
    return num_keep(config) if config.shift_elites else 0


def simulated_per_step(config: ICEMConfig) -> int:
    """Control steps simulated by one :func:`plan` call: (sum N_i + shifted + I*M) * h."""
    rows = sum(population_sizes(config)) + _num_shift(config)
    rows += config.iterations * config.num_extra_candidates
    return rows * config.horizon


@struct.dataclass
class PlannerState:
    """Planner memory between control steps (one environment; vmap for several).

    Attributes:
      mean: ``[h, A]`` sampling mean.
      std: ``[h, A]`` sampling std.
      elite_actions: ``[n_keep, h, A]`` best elites of the last step (n_keep = int(K*xi)).
      elite_costs: ``[n_keep]``, +inf where empty (start of an episode) or non-finite.
      low, high: ``[A]`` action bounds.
      beta, momentum, init_std: traced copies of the config's float fields.
    """

    mean: jax.Array
    std: jax.Array
    elite_actions: jax.Array
    elite_costs: jax.Array
    low: jax.Array
    high: jax.Array
    beta: jax.Array
    momentum: jax.Array
    init_std: jax.Array

    @property
    def has_memory(self) -> jax.Array:
        """Bool scalar: some shifted elite is available."""
        return jnp.any(jnp.isfinite(self.elite_costs))


@struct.dataclass
class PlanInfo:
    """Diagnostics of one :func:`plan` call.

    Attributes:
      best_cost: scalar, aggregated total cost of the best sequence seen (+inf if none finite).
      best_actions: ``[h, A]`` that sequence (the mean if none finite).
      elite_costs: ``[K]`` the last iteration's elite costs, ascending.
      best_task_cost, best_extra_cost: the task and extra parts of the best sequence
        (each aggregated like the total).
      extra_candidate_costs, extra_candidate_task_costs: ``[M]`` total and task costs of
        the caller's candidates at the last iteration.
      num_simulated_steps: int32, control steps simulated (see :func:`simulated_per_step`).
      all_nonfinite: bool, every candidate of every iteration was non-finite.
      mean_action: ``[A]`` the first action of the planner's mean after its last
        iteration, clipped to the bounds (what ``execute="mean"`` executes).
    """

    best_cost: jax.Array
    best_actions: jax.Array
    elite_costs: jax.Array
    best_task_cost: jax.Array
    best_extra_cost: jax.Array
    extra_candidate_costs: jax.Array
    extra_candidate_task_costs: jax.Array
    num_simulated_steps: jax.Array
    all_nonfinite: jax.Array
    mean_action: jax.Array


def _reset_stats(
    init_std: jax.Array, low: jax.Array, high: jax.Array, h: int
) -> tuple[jax.Array, jax.Array]:
    mean = jnp.broadcast_to((low + high) / 2.0, (h, low.shape[0]))
    std = jnp.broadcast_to(init_std * (high - low) / 2.0, (h, low.shape[0]))
    return mean, std


def init(config: ICEMConfig, action_bounds: tuple[object, object]) -> PlannerState:
    """Start-of-episode state: mean at the bounds' midpoint, std init_std*(high-low)/2.

    ``action_bounds``: ``(low [A], high [A])``.
    """
    low = jnp.asarray(action_bounds[0], jnp.float32)
    high = jnp.asarray(action_bounds[1], jnp.float32)
    if low.ndim != 1 or low.shape != high.shape:
        raise ValueError(f"action_bounds must be two [A] arrays, got {low.shape}, {high.shape}")
    state = _init_jit(config, low, high)
    if not isinstance(low, jax.core.Tracer):
        # commit to the bounds' device, as a jitted plan's outputs are (the env state is):
        # jit keys its cache on placement, so an uncommitted state would compile twice
        state = jax.device_put(state, next(iter(low.devices())))
    return state


@functools.partial(jax.jit, static_argnums=0)
def _init_jit(config: ICEMConfig, low: jax.Array, high: jax.Array) -> PlannerState:
    init_std = jnp.asarray(config.init_std, jnp.float32)
    mean, std = _reset_stats(init_std, low, high, config.horizon)
    k = num_keep(config)
    return PlannerState(
        mean=mean,
        std=std,
        elite_actions=jnp.zeros((k, config.horizon, low.shape[0]), jnp.float32),
        elite_costs=jnp.full((k,), jnp.inf, jnp.float32),
        low=low,
        high=high,
        beta=jnp.asarray(config.beta, jnp.float32),
        momentum=jnp.asarray(config.momentum, jnp.float32),
        init_std=init_std,
    )


@functools.partial(jax.jit, static_argnums=0)
def reset(config: ICEMConfig, planner_state: PlannerState) -> PlannerState:
    """New episode: fresh mean/std and empty memory; keeps bounds and hyperparameters."""
    mean, std = _reset_stats(
        planner_state.init_std, planner_state.low, planner_state.high, config.horizon
    )
    return planner_state.replace(
        mean=mean,
        std=std,
        elite_actions=jnp.zeros_like(planner_state.elite_actions),
        elite_costs=jnp.full_like(planner_state.elite_costs, jnp.inf),
    )


def with_hyperparams(
    planner_state: PlannerState,
    *,
    beta: float | jax.Array | None = None,
    momentum: float | jax.Array | None = None,
    init_std: float | jax.Array | None = None,
) -> PlannerState:
    """Replaces the traced hyperparameters (no recompilation of a jitted ``plan``)."""
    changes = {}
    for k, v in dict(beta=beta, momentum=momentum, init_std=init_std).items():
        if v is None:
            continue
        old = getattr(planner_state, k)
        v = jnp.broadcast_to(jnp.asarray(v, jnp.float32), old.shape)
        if not isinstance(v, jax.core.Tracer) and not isinstance(old, jax.core.Tracer):
            v = jax.device_put(v, old.sharding)  # same placement: no recompilation
        changes[k] = v
    return planner_state.replace(**changes)


def sample_population(
    config: ICEMConfig,
    key: jax.Array,
    planner_state: PlannerState,
    mean: jax.Array,
    std: jax.Array,
    iteration: int,
    extra_candidates: jax.Array | None = None,
) -> jax.Array:
    """The sequences simulated at ``iteration`` (static), clipped to the bounds.

    Rows: ``[N_i sampled (the last one is the mean at the last iteration if
    use_mean_actions) | shifted elites (iteration 0, if shift_elites) | M extra]``,
    i.e. ``[N_i + n_shift + M, h, A]``. A shifted slot with no elite in memory holds a
    fresh sample instead, so no simulation is wasted.
    """
    low, high = planner_state.low, planner_state.high
    h, a_dim = mean.shape
    n = population_sizes(config)[iteration]
    n_shift = _num_shift(config) if iteration == 0 else 0
    if config.sampling == "truncated":
        # white noise truncated to the bounds, in units of each element's std
        safe = jnp.maximum(std, 1e-8)
        lo, hi = (low - mean) / safe, (high - mean) / safe
        eps = jax.random.truncated_normal(key, lo, hi, (n + n_shift, h, a_dim))
    else:
        eps = colored_noise(
            key,
            planner_state.beta,
            (n + n_shift, h, a_dim),
            normalization=config.noise_normalization,
        )
    samples = jnp.clip(mean + std * eps, low, high)  # [n + n_shift, h, A]
    rows = [samples[:n]]
    if iteration == config.iterations - 1 and config.use_mean_actions:
        rows[0] = rows[0].at[-1].set(jnp.clip(mean, low, high))
    if n_shift:
        fresh = samples[n:]
        # shift left one step; the fresh sample's last action fills the new last step
        shifted = jnp.concatenate([planner_state.elite_actions[:, 1:], fresh[:, -1:]], axis=1)
        ok = jnp.isfinite(planner_state.elite_costs)[:, None, None]
        rows.append(jnp.where(ok, shifted, fresh))
    if config.num_extra_candidates:
        rows.append(jnp.clip(extra_candidates, low, high))
    return jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]


def _aggregate(config: ICEMConfig, costs: jax.Array) -> jax.Array:
    """``[P, h]`` -> ``[P]``."""
    if config.cost_aggregation == "sum":
        return jnp.sum(costs, axis=-1)
    if config.cost_aggregation == "min":
        return jnp.min(costs, axis=-1)
    return costs[:, -1]


def _smallest(costs: jax.Array, k: int) -> jax.Array:
    """Indices of the k lowest costs, ascending ``[k]``."""
    return jax.lax.top_k(-costs, k)[1]


def plan(
    config: ICEMConfig,
    key: jax.Array,
    planner_state: PlannerState,
    env_state: State,
    task: Task,
    *,
    extra_candidates: jax.Array | None = None,
    extra_cost: ExtraCost | None = None,
) -> tuple[jax.Array, PlannerState, PlanInfo]:
    """One control step of iCEM from ``env_state``.

    Args:
      config: static options (close over it or mark it static under jit).
      key: PRNG key.
      planner_state: from :func:`init` / the previous call.
      env_state: the state to plan from (not modified).
      task: dynamics and per-step cost.
      extra_candidates: ``[M, h, A]`` with M = ``config.num_extra_candidates``; added to
        every iteration's population (clipped). Required iff M > 0.
      extra_cost: ``(state, action, next_state) -> scalar`` added to the task cost.

    Returns:
      action ``[A]`` (in bounds), the next PlannerState (mean shifted, std reset,
      elites remembered), and :class:`PlanInfo`.
    """
    m = config.num_extra_candidates
    h = config.horizon
    a_dim = planner_state.low.shape[0]
    if m:
        if extra_candidates is None or tuple(extra_candidates.shape) != (m, h, a_dim):
            got = None if extra_candidates is None else tuple(extra_candidates.shape)
            raise ValueError(f"extra_candidates must have shape {(m, h, a_dim)}, got {got}")
    elif extra_candidates is not None and extra_candidates.shape[0] != 0:
        raise ValueError("extra_candidates given but config.num_extra_candidates is 0")

    k_el, n_keep = config.elites, num_keep(config)
    alpha = planner_state.momentum
    mean, std = planner_state.mean, planner_state.std
    best_cost = jnp.asarray(jnp.inf, jnp.float32)
    best_task = best_extra = best_cost
    best_actions = jnp.clip(mean, planner_state.low, planner_state.high)
    kept = None  # (actions [n_keep, h, A], total, task, extra [n_keep]) from the last iteration
    keys = jax.random.split(key, config.iterations)
    for i in range(config.iterations):  # unrolled: each iteration has its own static shape
        actions = sample_population(
            config, keys[i], planner_state, mean, std, i, extra_candidates
        )  # [P, h, A]
        task_c, extra_c, finite = rollout_open_loop_batch(task, env_state, actions, extra_cost)
        task_agg = _aggregate(config, task_c)
        extra_agg = _aggregate(config, extra_c)
        total = _aggregate(config, task_c + extra_c)
        finite = finite & jnp.isfinite(total)
        total = jnp.where(finite, total, jnp.inf)
        if m:
            extra_total, extra_task = total[-m:], jnp.where(finite, task_agg, jnp.inf)[-m:]
        if i > 0 and config.keep_elites and n_keep:
            actions = jnp.concatenate([actions, kept[0]], axis=0)
            total = jnp.concatenate([total, kept[1]])
            task_agg = jnp.concatenate([task_agg, kept[2]])
            extra_agg = jnp.concatenate([extra_agg, kept[3]])
        idx = _smallest(total, k_el)  # [K]
        el_a, el_c = actions[idx], total[idx]
        # refit to the finite elites only; keep the old stats if there are none
        w = jnp.isfinite(el_c).astype(jnp.float32)[:, None, None]
        cnt = jnp.sum(w)
        e_mean = jnp.sum(w * el_a, axis=0) / jnp.maximum(cnt, 1.0)
        e_std = jnp.sqrt(jnp.sum(w * (el_a - e_mean) ** 2, axis=0) / jnp.maximum(cnt, 1.0))
        any_ok = cnt > 0
        mean = jnp.where(any_ok, (1.0 - alpha) * e_mean + alpha * mean, mean)
        std = jnp.where(any_ok, (1.0 - alpha) * e_std + alpha * std, std)
        better = el_c[0] < best_cost
        best_cost = jnp.where(better, el_c[0], best_cost)
        best_task = jnp.where(better, task_agg[idx[0]], best_task)
        best_extra = jnp.where(better, extra_agg[idx[0]], best_extra)
        best_actions = jnp.where(better, el_a[0], best_actions)
        top = idx[:n_keep]
        kept = (actions[top], total[top], task_agg[top], extra_agg[top])

    all_nonfinite = ~jnp.isfinite(best_cost)
    low, high = planner_state.low, planner_state.high
    mean_action = jnp.clip(mean[0], low, high)
    if config.execute == "best":
        action = jnp.clip(jnp.where(all_nonfinite, mean[0], best_actions[0]), low, high)
    else:
        action = mean_action

    next_mean = jnp.concatenate([mean[1:], mean[-1:]], axis=0)
    _, next_std = _reset_stats(planner_state.init_std, low, high, h)
    new_state = planner_state.replace(
        mean=next_mean, std=next_std, elite_actions=kept[0], elite_costs=kept[1]
    )
    if not m:
        extra_total = extra_task = jnp.zeros((0,), jnp.float32)
    info = PlanInfo(
        best_cost=best_cost,
        best_actions=best_actions,
        elite_costs=el_c,
        best_task_cost=best_task,
        best_extra_cost=best_extra,
        extra_candidate_costs=extra_total,
        extra_candidate_task_costs=extra_task,
        num_simulated_steps=jnp.asarray(simulated_per_step(config), jnp.int32),
        all_nonfinite=all_nonfinite,
        mean_action=mean_action,
    )
    return action, new_state, info

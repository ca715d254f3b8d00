"""A trained run's controllers side by side: the planner alone, the policy alone, and the
policy with a small planner, on the same fresh start states.

- ``planner``: the run's iCEM planner as configured, unguided (no policy candidates, no
  guidance cost): what the simulator alone buys at the run's budget.
- ``policy``: the distilled policy acting alone, one MLP pass per step, no planner.
- ``policy_small_planner``: the guided planner of training (the policy's candidates in
  the population, the guidance cost with the run's λ) at a fraction of the run's planner
  budget (:func:`small_planner`).

Every controller runs the same episodes (the same keys, so the same start states, checked
by hash). Reported per controller: success rate and returns over the episodes, simulated
control steps per control step, and the wall time per control step of a call made after
a separate warm-up call (compile time reported apart). The episodes run batched (vmap):
the wall time of a control step is that of all episodes together.

The episodes are those of :func:`apexjax.render.policy_episodes` and
:func:`apexjax.render.expert_episodes` (the training loop's own episode functions). Those
compile on every call and replay the executed actions to return the states; the planners'
run time is their second call's wall time minus the compile time JAX reports for it
(:mod:`jax.monitoring`), and the replay adds one simulated step to the hundreds a planner
takes. The policy alone is timed on a program of its own, without the replay that would
double its cost: the same closed loop (checked: the same costs), compiled ahead of time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from apexjax.configs import ConfigError

if TYPE_CHECKING:
    import jax

    from apexjax.envs.base import Task
    from apexjax.loop import TrainConfig
    from apexjax.planning.icem import ICEMConfig
    from apexjax.policy import PolicyState
    from apexjax.render import Episode

__all__ = [
    "CONTROLLERS",
    "compare",
    "controller_configs",
    "format_table",
    "small_planner",
]

log = logging.getLogger(__name__)

#: name -> what it is, in the order they run and are reported.
CONTROLLERS = {
    "planner": "the run's planner alone (no policy candidates, no guidance)",
    "policy": "the policy alone (no planner)",
    "policy_small_planner": "the policy with a small planner (its candidates and guidance)",
}

_LABELS = {
    "planner": "planner alone",
    "policy": "policy alone",
    "policy_small_planner": "policy + small planner",
}

#: why there is no PPO row: nothing saves PPO's parameters (docs/compare.md).
PPO_NOTE = (
    "not compared: no apexjax command saves a PPO policy (apexjax.bench.learning trains "
    "Brax PPO for its learning-speed benchmark and keeps only the evaluation curve)"
)

#: the smallest population :func:`small_planner` gives (2 elites: the smallest valid iCEM).
MIN_POPULATION = 4

# what JAX spends compiling inside a call (tracing, lowering, XLA, cache reads)
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
    "/jax/compilation_cache/cache_retrieval_time_sec",
)


# ------------------------------------------------------------------------------ configs
def small_planner(
    planner: ICEMConfig, fraction: float, min_population: int = MIN_POPULATION
) -> ICEMConfig:
    """``planner`` with its population scaled by ``fraction`` (rounded, at least
    ``min_population``, never above the original) and its elites scaled alike (at least
    2, at most half the population, as iCEM requires); horizon, iterations and the rest
    unchanged.

    Raises:
      ConfigError: ``fraction`` not in (0, 1] (named ``small_fraction``).
    """
    if isinstance(fraction, bool) or not (
        isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 < fraction <= 1
    ):
        raise ConfigError(f"small_fraction: must be a number in (0, 1], got {fraction!r}")
    n, k = planner.population, planner.elites
    pop = min(n, max(min_population, round(n * fraction)))
    elites = min(pop // 2, max(2, round(k * pop / n)))
    return dataclasses.replace(planner, population=pop, elites=elites, num_extra_candidates=0)


def controller_configs(config: TrainConfig, small_fraction: float = 0.1) -> dict[str, Any]:
    """The training config each planning controller runs with (``None`` for the policy
    alone): ``planner`` without policy candidates and guidance (mode ``off``, weight 0),
    ``policy_small_planner`` with :func:`small_planner` and the run's policy candidates
    (at least 1) and guidance."""
    alone = dataclasses.replace(
        config,
        policy_candidates=0,
        planner=dataclasses.replace(config.planner, num_extra_candidates=0),
        guidance=dataclasses.replace(config.guidance, mode="off", weight=0.0),
    )
    small = dataclasses.replace(
        config,
        policy_candidates=max(1, config.policy_candidates),
        planner=small_planner(config.planner, small_fraction),
    )
    return {"planner": alone, "policy": None, "policy_small_planner": small}


def _simulated_per_step(config: TrainConfig | None) -> int:
    """Simulated control steps per executed one: the executed step, plus for a planner
    its rollouts (:func:`apexjax.planning.icem.simulated_per_step` with the policy's
    candidates), the policy's own closed-loop rollout the candidates start from, and in
    ``normalized`` guidance mode the replay of the best sequence."""
    from apexjax.planning import icem

    if config is None:
        return 1
    m, h = config.policy_candidates, config.planner.horizon
    planner = dataclasses.replace(config.planner, num_extra_candidates=m)
    steps = 1 + icem.simulated_per_step(planner) + (h if m else 0)
    if config.guidance.mode == "normalized":
        steps += h
    return steps


def _lambda(config: TrainConfig, stored: float) -> float | None:
    """λ the episodes start with (as :func:`apexjax.loop.make_evaluate` sets it); None in
    the per-step adaptive modes, where it changes every step."""
    g = config.guidance
    if g.mode == "off":
        return 0.0
    if g.per_iteration:
        return float(stored)
    if g.mode == "fixed":
        return float(g.weight)
    return None


def _planner_info(config: TrainConfig, stored_lambda: float, base: ICEMConfig) -> dict[str, Any]:
    from apexjax.planning import icem

    p = config.planner
    unguided = icem.simulated_per_step(dataclasses.replace(p, num_extra_candidates=0))
    full = icem.simulated_per_step(dataclasses.replace(base, num_extra_candidates=0))
    return {
        "population": p.population,
        "elites": p.elites,
        "horizon": p.horizon,
        "iterations": p.iterations,
        "population_sizes": list(icem.population_sizes(p)),
        "policy_candidates": config.policy_candidates,
        "guidance_mode": config.guidance.mode,
        "guidance_weight": _lambda(config, stored_lambda),
        "budget_fraction": unguided / full,  # sampled rollouts against the run's planner
    }


# ------------------------------------------------------------------------------ timing
@dataclasses.dataclass
class _Timing:
    compile_s: float = 0.0
    warmup_s: float = 0.0
    run_s: float = 0.0


@contextlib.contextmanager
def _compile_clock() -> Iterator[list[float]]:
    """Sums the compile time JAX reports while the block runs (a listener of
    :mod:`jax.monitoring`, removed afterwards)."""
    import jax

    spent = [0.0]

    def listen(event: str, duration: float, **_: Any) -> None:
        if event in _COMPILE_EVENTS:
            spent[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield spent
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def _timed_twice(fn: Callable[[], list[Episode]]) -> tuple[list[Episode], _Timing]:
    """Calls ``fn`` twice: the first call's compile time, the second call's run time
    (its wall time less the compile time JAX reports for it)."""
    timing = _Timing()
    with _compile_clock() as spent:
        t = time.perf_counter()
        fn()
        timing.warmup_s = time.perf_counter() - t
    timing.compile_s = spent[0]
    with _compile_clock() as spent:
        t = time.perf_counter()
        out = fn()
        timing.run_s = max(time.perf_counter() - t - spent[0], 0.0)
    return out, timing


def _policy_program(config: TrainConfig, task: Task) -> Callable[..., Any]:
    """``run(policy_state, keys [N]) -> (costs [N, T], success [N])``: the policy alone
    from the start states of :func:`apexjax.render.policy_episodes`, without the replay."""
    import jax

    from apexjax import policy
    from apexjax.planning.rollout import rollout_closed_loop

    def one(pol: PolicyState, k: jax.Array) -> tuple[jax.Array, jax.Array]:
        s0 = task.reset(jax.random.split(k)[0])  # the render/loop episodes' reset key
        _, _, costs, final = rollout_closed_loop(
            task,
            s0,
            lambda s: policy.act(config.policy, pol, task.observation(s)),
            task.episode_length,
        )
        return costs, task.success(final)

    return jax.jit(jax.vmap(one, in_axes=(None, 0)))


def _time_policy(
    config: TrainConfig, task: Task, policy_state: PolicyState, keys: jax.Array
) -> tuple[np.ndarray, _Timing]:
    import jax

    timing = _Timing()
    t = time.perf_counter()
    compiled = _policy_program(config, task).lower(policy_state, keys).compile()
    timing.compile_s = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(compiled(policy_state, keys))
    timing.warmup_s = time.perf_counter() - t
    t = time.perf_counter()
    costs, _ = jax.block_until_ready(compiled(policy_state, keys))
    timing.run_s = time.perf_counter() - t
    return np.asarray(costs), timing


# ------------------------------------------------------------------------------ compare
def _start_hash(episodes: list[Episode]) -> str:
    """SHA-1 of every episode's start state (all leaves, raw bytes)."""
    import jax

    h = hashlib.sha1()
    for ep in episodes:
        for leaf in jax.tree.leaves(jax.tree.map(lambda x: x[0], ep.states)):
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(str((a.dtype, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _summary(
    name: str,
    episodes: list[Episode],
    timing: _Timing,
    config: TrainConfig | None,
    task: Task,
) -> dict[str, Any]:
    returns = np.array([ep.episode_return for ep in episodes], np.float64)
    n, T = len(episodes), task.episode_length
    successes = [ep.success for ep in episodes] if task.has_success else None
    finite = returns[np.isfinite(returns)]
    first = episodes[0].states
    qpos = getattr(getattr(first, "data", None), "qpos", None)
    return {
        "description": CONTROLLERS[name],
        "episodes": n,
        "success_rate": None if successes is None else sum(successes) / n,
        "successes": successes,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns, ddof=1)) if n > 1 else 0.0,
        "returns": returns.tolist(),
        "nonfinite_returns": int(n - finite.size),
        "simulated_steps_per_control_step": _simulated_per_step(config),
        "wall_s_per_control_step": timing.run_s / T,
        "wall_s_per_episode_step": timing.run_s / (n * T),
        "run_s": timing.run_s,
        "warmup_s": timing.warmup_s,
        "compile_s": timing.compile_s,
        "start_states_sha1": _start_hash(episodes),
        "first_start_qpos": None if qpos is None else np.asarray(qpos[0]).tolist(),
    }


def compare(
    config: TrainConfig,
    task: Task,
    policy_state: PolicyState,
    keys: jax.Array,
    guidance_weight: float | jax.Array = 0.0,
    *,
    small_fraction: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The three controllers of a run (:data:`CONTROLLERS`), one episode each per key of
    ``keys`` ``[N]``, all from the same start states.

    Args:
      config, task, policy_state: a run's config, its task (:func:`apexjax.loop.build_task`)
        and trained policy.
      keys: ``[N]`` episode keys.
      guidance_weight: the run's ``TrainState.guidance_weight`` (λ of the guided planner in
        ``progress``/``gap`` mode).
      small_fraction: the small planner's population as a fraction of the run's
        (:func:`small_planner`).
      progress: called with a line before each controller runs.

    Returns:
      a JSON-ready dict: ``controllers`` (name -> summary: success rate, returns, simulated
      steps and wall time per control step, compile time, planner sizes), ``episodes``,
      ``episode_length``, ``frame_skip``, ``same_start_states`` and the planner settings.

    Raises:
      ConfigError: a bad ``small_fraction``.
    """
    from apexjax import render

    configs = controller_configs(config, small_fraction)
    lam = float(np.asarray(guidance_weight))
    say = progress or (lambda line: log.info("%s", line))
    out: dict[str, Any] = {}

    say("planner alone: compiling, warm-up, timed run")
    eps, timing = _timed_twice(
        lambda: render.expert_episodes(configs["planner"], task, policy_state, keys, 0.0)
    )
    out["planner"] = _summary("planner", eps, timing, configs["planner"], task)
    out["planner"]["planner"] = _planner_info(configs["planner"], 0.0, config.planner)

    say("policy alone: compiling, warm-up, timed run")
    eps = render.policy_episodes(config, task, policy_state, keys)
    costs, timing = _time_policy(config, task, policy_state, keys)
    same = np.allclose(
        costs, np.stack([ep.costs for ep in eps]), rtol=1e-5, atol=1e-6, equal_nan=True
    )
    if not same:
        log.warning("compare: the timed policy program's costs differ from its episodes'")
    out["policy"] = _summary("policy", eps, timing, None, task)
    out["policy"]["timed_program_matches"] = bool(same)

    say(
        f"policy with a small planner ({small_fraction:g} of the population): compiling, warm-up, timed run"
    )
    small = configs["policy_small_planner"]
    eps, timing = _timed_twice(lambda: render.expert_episodes(small, task, policy_state, keys, lam))
    out["policy_small_planner"] = _summary("policy_small_planner", eps, timing, small, task)
    out["policy_small_planner"]["planner"] = _planner_info(small, lam, config.planner)

    hashes = {c["start_states_sha1"] for c in out.values()}
    if len(hashes) != 1:
        log.warning("compare: the controllers did not start from the same states")
    return {
        "episodes": int(keys.shape[0]),
        "episode_length": task.episode_length,
        "frame_skip": getattr(task, "frame_skip", None),
        "control_dt": getattr(task, "dt", None),
        "small_fraction": small_fraction,
        "same_start_states": len(hashes) == 1,
        "controllers": out,
        "ppo": PPO_NOTE,
    }


def _fmt_s(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`compare`'s result, one row per controller."""
    n = result["episodes"]
    lines = [
        f"| controller | success (n={n}) | return, mean ± std | sim. steps / control step | "
        f"wall / control step ({n} episodes batched) | compile |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in result["controllers"].items():
        label = _LABELS.get(name, name)
        if "planner" in c:
            p = c["planner"]
            label += f" (N={p['population']}, K={p['elites']}, h={p['horizon']}, M={p['policy_candidates']})"
        rate = c["success_rate"]
        success = "–" if rate is None else f"{round(rate * n)}/{n} ({rate:.0%})"
        lines.append(
            f"| {label} | {success} | {c['return_mean']:.4g} ± {c['return_std']:.2g} | "
            f"{c['simulated_steps_per_control_step']:,} | {_fmt_s(c['wall_s_per_control_step'])} | "
            f"{_fmt_s(c['compile_s'])} |"
        )
    return "\n".join(lines) + "\n"

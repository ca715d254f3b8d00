"""Closed-loop MPC: the planner acts in the environment for whole episodes.

Control steps are a ``lax.scan`` (in chunks, so a caller can show progress between
chunks without recompiling), episodes a ``vmap``. Compilation is timed apart from the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from apexjax.envs.base import State, Task
from apexjax.planning import icem
from apexjax.planning.rollout import ExtraCost

__all__ = ["make_mpc_step", "run_mpc"]

Carry = tuple[State, icem.PlannerState, jax.Array]


def make_mpc_step(
    config: icem.ICEMConfig, task: Task, extra_cost: ExtraCost | None = None
) -> Callable[[Carry, Any], tuple[Carry, dict[str, jax.Array]]]:
    """One closed-loop control step for ONE episode, as a ``lax.scan`` body.

    Carry: ``(env_state, planner_state, key)``. Outputs: action ``[A]``, cost (the task
    cost of the executed step), best_cost (planner's predicted), all_nonfinite.
    """

    def step(carry: Carry, _: Any) -> tuple[Carry, dict[str, jax.Array]]:
        s, ps, key = carry
        key, sub = jax.random.split(key)
        a, ps, info = icem.plan(config, sub, ps, s, task, extra_cost=extra_cost)
        s2 = task.step(s, a)
        out = dict(
            action=a,
            cost=task.cost(s, a, s2),
            best_cost=info.best_cost,
            all_nonfinite=info.all_nonfinite,
        )
        return (s2, ps, key), out

    return step


def _chunk_len(total: int, wanted: int) -> int:
    """Largest divisor of ``total`` not above ``wanted`` (one compiled chunk shape)."""
    wanted = max(1, min(wanted, total))
    return max(d for d in range(1, wanted + 1) if total % d == 0)


def run_mpc(
    config: icem.ICEMConfig,
    task: Task,
    key: jax.Array,
    num_episodes: int,
    *,
    num_steps: int | None = None,
    chunk_size: int | None = None,
    callback: Callable[[int, int, float], None] | None = None,
    extra_cost: ExtraCost | None = None,
) -> dict[str, Any]:
    """Runs ``num_episodes`` closed-loop episodes in parallel.

    Args:
      config: planner options (``num_extra_candidates`` must be 0 here).
      task: the environment (and the planner's model).
      key: PRNG key; episode e's reset and planning keys derive from it.
      num_episodes: E.
      num_steps: T, control steps per episode (default ``task.episode_length``).
      chunk_size: control steps per compiled call (default T: one call); rounded down to
        a divisor of T.
      callback: ``callback(steps_done, T, seconds_since_start)`` after every chunk.
      extra_cost: per-step cost term added inside the planner.

    Returns:
      dict of numpy arrays and floats: ``returns [E]`` (= -sum of executed task costs),
      ``success [E]`` (at the last step; False where the task defines none),
      ``actions [E, T, A]``, ``costs [E, T]``, ``predicted_costs [E, T]``,
      ``nonfinite_steps [E]``, ``compile_s``, ``run_s``, ``time_per_step_s`` (wall time of
      one control step of all E episodes), ``simulated_steps_per_control_step``.
    """
    if config.num_extra_candidates:
        raise ValueError("run_mpc plans without extra candidates: num_extra_candidates must be 0")
    T = int(num_steps if num_steps is not None else task.episode_length)
    chunk = _chunk_len(T, chunk_size or T)
    k_reset, k_plan = jax.random.split(key)
    # one compiled call: op by op, each operation of reset is dispatched (and compiled) alone
    states = jax.jit(jax.vmap(task.reset))(jax.random.split(k_reset, num_episodes))
    ps0 = icem.init(config, task.action_bounds)
    planner = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_episodes, *x.shape)), ps0)
    carry = (states, planner, jax.random.split(k_plan, num_episodes))
    step = make_mpc_step(config, task, extra_cost)

    def one_episode(c: Carry) -> tuple[Carry, dict[str, jax.Array]]:
        return jax.lax.scan(step, c, None, length=chunk)

    t0 = time.perf_counter()
    run_chunk = jax.jit(jax.vmap(one_episode)).lower(carry).compile()
    compile_s = time.perf_counter() - t0

    outs = []
    t0 = time.perf_counter()
    for done in range(chunk, T + 1, chunk):
        carry, out = run_chunk(carry)
        jax.block_until_ready(out)
        outs.append(out)
        if callback is not None:
            callback(done, T, time.perf_counter() - t0)
    run_s = time.perf_counter() - t0

    out = {k: np.concatenate([np.asarray(o[k]) for o in outs], axis=1) for k in outs[0]}
    success = np.asarray(jax.jit(jax.vmap(task.success))(carry[0]))
    return dict(
        returns=-out["cost"].sum(axis=1),
        success=success,
        actions=out["action"],
        costs=out["cost"],
        predicted_costs=out["best_cost"],
        nonfinite_steps=out["all_nonfinite"].sum(axis=1),
        compile_s=compile_s,
        run_s=run_s,
        time_per_step_s=run_s / T,
        simulated_steps_per_control_step=icem.simulated_per_step(config),
        num_episodes=num_episodes,
        num_steps=T,
    )

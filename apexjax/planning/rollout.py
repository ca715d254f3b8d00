"""Open- and closed-loop rollouts through a task's dynamics: ``lax.scan`` over time.

Single-trajectory functions; batch them with ``jax.vmap`` (the ``*_batch`` helpers do
that for the common case of one start state and many action sequences).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from apexjax.envs.base import State, Task

__all__ = [
    "ExtraCost",
    "rollout_closed_loop",
    "rollout_open_loop",
    "rollout_open_loop_batch",
]

#: caller-supplied per-step cost term ``(state, action [A], next_state) -> scalar``.
ExtraCost = Callable[[State, jax.Array, State], jax.Array]


def rollout_open_loop(
    task: Task,
    state: State,
    actions: jax.Array,
    extra_cost: ExtraCost | None = None,
    resumable: bool = True,
) -> tuple[jax.Array, jax.Array, State, jax.Array]:
    """Applies ``actions`` ``[h, A]`` from ``state``; only costs are kept, not states.

    A task whose :meth:`~apexjax.envs.base.Task.simulate` is fused (native MuJoCo: one
    host call for the whole sequence) is simulated first and costed after, vectorised
    over time; any other is a ``lax.scan`` that costs each step as it goes (nothing but
    the final state is kept). Both give the same costs. ``resumable=False``: the final
    state need not be one to step on from (``Task.simulate``'s flag; cheaper natively).

    Returns:
      task_costs ``[h]``, extra_costs ``[h]`` (zeros without ``extra_cost``),
      the final state, and ``finite`` (bool scalar: every cost and the final state are
      finite; a diverged simulation stays non-finite once it is, so the final state
      is enough to detect it).
    """
    if task.simulate_is_fused:
        states = task.simulate(state, actions, resumable=resumable)
        prev = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s[:-1]]), state, states)
        task_costs = jax.vmap(task.cost)(prev, actions, states)
        if extra_cost is None:
            extra_costs = jnp.zeros_like(task_costs)
        else:
            extra_costs = jax.vmap(extra_cost)(prev, actions, states).astype(task_costs.dtype)
        final = jax.tree.map(lambda x: x[-1], states)
    else:

        def step(s: State, a: jax.Array) -> tuple[State, tuple[jax.Array, jax.Array]]:
            s2 = task.step(s, a)
            c = task.cost(s, a, s2)
            e = jnp.zeros_like(c) if extra_cost is None else extra_cost(s, a, s2)
            return s2, (c, jnp.asarray(e, c.dtype))

        final, (task_costs, extra_costs) = jax.lax.scan(step, state, actions)
    finite = (
        task.is_finite(final)
        & jnp.all(jnp.isfinite(task_costs))
        & jnp.all(jnp.isfinite(extra_costs))
    )
    return task_costs, extra_costs, final, finite


def rollout_open_loop_batch(
    task: Task,
    state: State,
    actions: jax.Array,
    extra_cost: ExtraCost | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Many action sequences ``[P, h, A]`` from one ``state``.

    Returns task_costs ``[P, h]``, extra_costs ``[P, h]``, finite ``[P]`` (final states
    are dropped: keeping P copies of the simulator state costs memory for nothing, and
    the rollouts are not kept resumable).
    """

    def one(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        c, e, _, ok = rollout_open_loop(task, state, a, extra_cost, resumable=False)
        return c, e, ok

    return jax.vmap(one)(actions)


def rollout_closed_loop(
    task: Task,
    state: State,
    policy_fn: Callable[[State], jax.Array],
    horizon: int,
) -> tuple[jax.Array, jax.Array, jax.Array, State]:
    """Runs ``policy_fn(state) -> action [A]`` for ``horizon`` steps from ``state``.

    The actions it returns, clipped to the bounds, replay the same trajectory with
    :func:`rollout_open_loop`, so they can be handed to the planner as candidates.

    Returns:
      actions ``[h, A]`` (clipped), observations ``[h, obs_dim]`` (of the state each
      action was taken in), task_costs ``[h]``, final state.
    """
    low, high = jnp.asarray(task.action_low), jnp.asarray(task.action_high)

    def step(s: State, _: None) -> tuple[State, tuple[jax.Array, jax.Array, jax.Array]]:
        a = jnp.clip(policy_fn(s), low, high)
        s2 = task.step(s, a)
        return s2, (a, task.observation(s), task.cost(s, a, s2))

    final, (actions, obs, costs) = jax.lax.scan(step, state, None, length=horizon)
    return actions, obs, costs, final

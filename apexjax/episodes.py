"""The episodes of an outer iteration, as pure functions of one environment each: the
guided expert (:attr:`EpisodeFns.expert`: the iCEM planner with the policy's candidates
and the guidance cost acts, or the policy acts and the planner labels each visited state:
sequential DAgger), the DAgger episode labelled in one batch afterwards
(:attr:`EpisodeFns.relabelled`) and the policy alone (:attr:`EpisodeFns.policy`).
Each returns a named record (:class:`Episode`, :class:`PolicyEpisode`).
:func:`batched_episode_fns` vmaps them over a batch of keys split over the config's devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from apexjax import policy
from apexjax.envs.base import State, Task
from apexjax.guidance import adaptive_weight, guidance_distance, make_guidance_cost
from apexjax.planning import icem
from apexjax.planning.noise import colored_noise
from apexjax.planning.rollout import rollout_closed_loop, rollout_open_loop
from apexjax.run import TrainConfig
from apexjax.sharding import make_mesh, split_over_devices

__all__ = [
    "Episode",
    "EpisodeFns",
    "PolicyEpisode",
    "Starts",
    "batched_episode_fns",
    "episode_fns",
    "episode_returns",
]


class Episode(NamedTuple):
    """One expert or DAgger episode (per control step, T of them).

    Attributes:
      observations: ``[T, O]`` the policy's observation of each visited state.
      labels: ``[T, A]`` the guided planner's action there (the dataset's target: the
        executed one, or its mean's under ``TrainConfig.label="mean"``).
      costs: ``[T]`` task costs of the executed steps.
      weights: ``[T]`` the guidance weight λ each plan used.
      simulated_steps: the planner's simulated control steps over the episode (scalar).
      success: whether the final state counts as solved (bool scalar).
      actions: ``[T, A]`` the actions taken (the planner's in an expert episode, the
        policy's in DAgger): with ``label="mean"`` they differ from the labels.
    """

    observations: jax.Array
    labels: jax.Array
    costs: jax.Array
    weights: jax.Array
    simulated_steps: jax.Array
    success: jax.Array
    actions: jax.Array


class PolicyEpisode(NamedTuple):
    """One episode of the policy alone: ``costs`` ``[T]`` and ``success`` (bool scalar)."""

    costs: jax.Array
    success: jax.Array


class EpisodeFns(NamedTuple):
    """The episode functions of one config and task (one environment each).

    Attributes:
      expert: ``(policy_state, key, policy_acts, lam0, on, warm=True) -> Episode``: the
        guided planner plans at every step; it acts (``policy_acts`` False: an expert
        episode) or labels the states the policy visits (True: DAgger, warm-started plan to
        plan). ``lam0`` is λ at the first step, ``on`` False during guidance warm-up,
        ``warm`` False while the policy's warm start waits (``TrainConfig.warm_start``);
        the other episode functions take the same two flags.
      policy: ``(policy_state, key) -> PolicyEpisode``: the policy alone, no planner.
      relabelled: ``(policy_state, key, lam0, on) -> Episode``: DAgger with batched
        relabelling: the policy acts for T steps, then the guided planner labels every
        visited state at once (each plan cold-started).
      recorded: ``(policy_state, key, lam0, on) -> (Episode, Starts)``: an expert episode
        that also returns the states it visited, with its planner memory at each.
      restarted: ``(policy_state, key, lam0, on, starts) -> Episode``: DAgger in segments
        of ``TrainConfig.dagger_segment`` steps, each from a state drawn from ``starts``
        (leading axis S, e.g. every state of several recorded episodes, flattened).
      plan: ``(policy_state, key, planner_state, env_state, lam, on, warm) -> (action,
        planner_state, PlanInfo, next_lam)``: one control step of the guided planner as
        the episodes run it (the policy's candidates, its warm start, guidance at λ
        ``lam``), for measuring the expert at chosen states.
    """

    expert: Callable[..., Episode]
    policy: Callable[..., PolicyEpisode]
    relabelled: Callable[..., Episode]
    recorded: Callable[..., tuple[Episode, Starts]]
    restarted: Callable[..., Episode]
    plan: Callable[..., tuple[jax.Array, icem.PlannerState, icem.PlanInfo, jax.Array]]


class Starts(NamedTuple):
    """States an episode visited, as starts for DAgger segments (leading axis: steps, and
    episodes when batched).

    Attributes:
      env: the environment state before each step.
      planner: the planner's memory there (its warm start for that step).
    """

    env: State
    planner: icem.PlannerState


def episode_returns(costs: jax.Array) -> jax.Array:
    """``[E, T] -> [E]``: minus the summed cost (non-finite steps count as NaN)."""
    return -jnp.sum(costs, axis=-1)


def episode_fns(config: TrainConfig, task: Task) -> EpisodeFns:
    """The :class:`EpisodeFns` of ``config`` on ``task``, one environment each."""
    pcfg, gcfg, polcfg = config.expert_planner, config.guidance, config.policy
    T, h = task.episode_length, pcfg.horizon
    M = config.policy_candidates
    label_mean = config.label == "mean"
    low, high = jnp.asarray(task.action_low), jnp.asarray(task.action_high)

    def policy_obs_fn(pol: policy.PolicyState) -> Callable[[jax.Array], jax.Array]:
        return lambda obs: policy.act(polcfg, pol, obs)

    warm_policy = config.warm_start == "policy"

    def guided_plan(pol, key, pstate, env_state, lam, on, warm):
        """Plan from ``env_state`` with policy candidates and guidance; returns λ for next.
        With ``warm_start="policy"`` and ``warm`` True the planner samples around the
        policy's own closed-loop rollout instead of its shifted mean."""
        pi = policy_obs_fn(pol)
        k_plan, k_noise = jax.random.split(key)
        cands = None
        if M or warm_policy:
            own, _, _, _ = rollout_closed_loop(
                task, env_state, lambda s: pi(task.observation(s)), h
            )
        if warm_policy:
            pstate = pstate.replace(mean=jnp.where(warm, own, pstate.mean))
        if M:
            noise = colored_noise(k_noise, pstate.beta, (M, h, own.shape[-1]))
            scale = config.candidate_noise * (high - low) / 2.0
            noisy = jnp.clip(own[None] + scale * noise, low, high)
            cands = noisy.at[0].set(own)  # the first is the policy itself, noise-free
        extra = None if gcfg.mode == "off" else make_guidance_cost(task, pi, lam)
        action, pstate, info = icem.plan(
            pcfg, k_plan, pstate, env_state, task, extra_candidates=cands, extra_cost=extra
        )
        dist = None
        if gcfg.mode == "normalized":
            # Unweighted guidance distance of the best sequence, measured by replaying it.
            def unweighted(s, a, s2):
                del s2
                return guidance_distance(a, pi(task.observation(s)), low, high)

            _, d, _, _ = rollout_open_loop(
                task, env_state, info.best_actions, unweighted, resumable=False
            )
            dist = jnp.sum(d)
        if gcfg.per_iteration:
            lam_next = lam  # constant over the iteration
        else:
            lam_next = on * adaptive_weight(
                gcfg,
                best_task_cost=info.best_task_cost,
                policy_task_cost=info.extra_candidate_task_costs[0] if M else None,
                best_distance=dist,
            )
        return action, pstate, info, lam_next

    L = config.dagger_segment

    def run_episode(pol, key, policy_acts, lam0, on, warm, starts: Starts | None, record: bool):
        """One episode; per-step obs [T,O], labels [T,A], costs [T], λ [T], final, and
        the visited states with the planner memory at each when ``record``. With
        ``starts`` the episode restarts every L steps at a state drawn from them."""
        k_reset, k_steps = jax.random.split(key)
        env0 = task.reset(k_reset)
        pstate0 = icem.init(pcfg, (task.action_low, task.action_high))
        pi = policy_obs_fn(pol)
        on = jnp.asarray(on, jnp.float32)

        def step(carry, xs):
            env_state, pstate, lam = carry
            k, t = xs
            if starts is not None:
                k, k_start = jax.random.split(k)
                n = jax.tree.leaves(starts.env)[0].shape[0]
                i = jax.random.randint(k_start, (), 0, n)
                drawn = jax.tree.map(lambda x: x[i], starts)
                restart = t % L == 0

                def pick(a, b):
                    return jnp.where(restart, a, b)

                env_state = jax.tree.map(pick, drawn.env, env_state)
                pstate = jax.tree.map(pick, drawn.planner, pstate)
            obs = task.observation(env_state)
            planned, pstate_next, info, lam_next = guided_plan(
                pol, k, pstate, env_state, lam, on, warm
            )
            label = info.mean_action if label_mean else planned
            act = jnp.where(policy_acts, pi(obs), planned)
            nxt = task.step(env_state, act)
            cost = task.cost(env_state, act, nxt)
            out = (obs, label, cost, lam, info.num_simulated_steps, act)
            if record:
                out = (*out, Starts(env_state, pstate))
            return (nxt, pstate_next, lam_next), out

        xs = (jax.random.split(k_steps, T), jnp.arange(T))
        (final, _, _), outs = jax.lax.scan(
            step, (env0, pstate0, jnp.asarray(lam0, jnp.float32)), xs
        )
        obs, labels, costs, lams, sims, acts = outs[:6]
        ep = Episode(obs, labels, costs, lams, jnp.sum(sims), task.success(final), acts)
        return (ep, outs[6]) if record else ep

    def episode(pol, key, policy_acts, lam0, on, warm=True):
        """One episode (see :class:`EpisodeFns`); ``lam0`` is λ at the first step, ``on``
        (bool) is False during guidance warm-up, ``warm`` False while the policy's warm
        start waits (``TrainConfig.warm_start_after``)."""
        return run_episode(pol, key, policy_acts, lam0, on, warm, None, False)

    def recorded_episode(pol, key, lam0, on, warm=True):
        """An expert episode and the states it visited, with the planner memory at each."""
        return run_episode(pol, key, False, lam0, on, warm, None, True)

    def restarted_episode(pol, key, lam0, on, starts: Starts, warm=True):
        """DAgger in segments of L steps, each from a state drawn from ``starts``."""
        if not L:
            raise ValueError("restarted episodes need TrainConfig.dagger_segment > 0")
        return run_episode(pol, key, True, lam0, on, warm, starts, False)

    def relabelled_episode(pol, key, lam0, on, warm=True):
        """DAgger with batched relabelling: the policy acts for T steps, then the guided
        planner labels every visited state at once (cold start). Same outputs as
        ``episode``."""
        k_reset, k_plan = jax.random.split(key)
        pi = policy_obs_fn(pol)

        def act(s, _):
            a = jnp.clip(pi(task.observation(s)), low, high)
            s2 = task.step(s, a)
            return s2, (s, task.cost(s, a, s2), a)

        final, (states, costs, acts) = jax.lax.scan(act, task.reset(k_reset), None, length=T)
        pstate0 = icem.init(pcfg, (task.action_low, task.action_high))
        lam = jnp.asarray(lam0, jnp.float32)
        on = jnp.asarray(on, jnp.float32)

        def label(s, k):
            a, _, info, _ = guided_plan(pol, k, pstate0, s, lam, on, warm)
            return (info.mean_action if label_mean else a), info.num_simulated_steps

        labels, sims = jax.vmap(label)(states, jax.random.split(k_plan, T))
        obs = jax.vmap(task.observation)(states)
        lams = jnp.full((T,), lam)
        return Episode(obs, labels, costs, lams, jnp.sum(sims), task.success(final), acts)

    def policy_episode(pol, key):
        """Policy alone (no planner): costs [T], success."""
        pi = policy_obs_fn(pol)
        env0 = task.reset(key)
        _, _, costs, final = rollout_closed_loop(task, env0, lambda s: pi(task.observation(s)), T)
        return PolicyEpisode(costs, task.success(final))

    return EpisodeFns(
        episode,
        policy_episode,
        relabelled_episode,
        recorded_episode,
        restarted_episode,
        guided_plan,
    )


def batched_episode_fns(
    config: TrainConfig, task: Task
) -> tuple[Callable[..., Episode], Callable[..., PolicyEpisode]]:
    """Episodes over a leading batch axis of keys, split over ``config.num_devices``:

    ``run_episodes(pol, keys [B], policy_acts [B], lam0, on, warm)`` (the guided planner in
    the loop) and ``run_policy_episodes(pol, keys [B])`` (the policy alone). The policy, λ
    and the warm-up flags are replicated on every device.
    """
    fns = episode_fns(config, task)
    episode, policy_episode = fns.expert, fns.policy
    mesh = make_mesh(config.num_devices) if config.num_devices > 1 else None
    run_episodes = split_over_devices(
        lambda pol, keys, acts, lam0, on, warm: jax.vmap(
            lambda k, a: episode(pol, k, a, lam0, on, warm)
        )(keys, acts),
        mesh,
        (False, True, True, False, False, False),
    )
    run_policy_episodes = split_over_devices(
        lambda pol, keys: jax.vmap(lambda k: policy_episode(pol, k))(keys), mesh, (False, True)
    )
    return run_episodes, run_policy_episodes

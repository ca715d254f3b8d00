"""APEX: one jitted outer iteration (``make_train_step``) over pure pieces.

One iteration, all inside one ``jax.jit``, vmapped over ``num_envs`` parallel episodes
(:mod:`apexjax.episodes`):

1. Expert episodes: the guided iCEM planner acts. Each control step it plans from the
   current state with (a) the policy's own closed-loop rollout (and optional noisy copies)
   injected as candidates and (b) the guidance cost weighted by λ. In ``progress`` mode (the
   default) λ is fixed for the iteration, set at the end of the previous one from the policy's
   evaluation against the best expert so far; in the per-step modes it comes from
   :func:`apexjax.guidance.adaptive_weight` on the previous plan (all λ rules live in
   :mod:`apexjax.guidance`). The (observation, planner action) pairs are behaviour-cloning
   data.
2. DAgger episodes: the policy acts; at every visited state the guided planner plans
   (sequentially along the trajectory, warm-started from the previous step's plan) and its
   action is the label. From a reset (the default), or with ``dagger_segment`` L > 0 in
   segments of L steps, each starting at a state of this iteration's expert episodes
   (which then run first) with the expert's planner memory there.
3. Aggregation into the fixed-capacity dataset, normaliser update with the new observations.
4. ``sgd_steps`` minibatch steps on the whole aggregated dataset (warm start).
5. Evaluation of the updated policy alone (no planner) on fresh episodes, then the next
   iteration's λ (``progress`` mode).

Returns are ``-sum(cost)`` over an episode. The config and state are in :mod:`apexjax.run`
(re-exported here); :func:`apexjax.driver.fit` runs the step, :mod:`apexjax.train` adds the
run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from apexjax import aggregator, policy
from apexjax.configs import ConfigError
from apexjax.envs.base import Task
from apexjax.episodes import (
    Episode,
    batched_episode_fns,
    episode_fns,
    episode_returns,
)
from apexjax.guidance import initial_weight, next_iteration_weight
from apexjax.run import TrainConfig, TrainState, build_task, init_train_state, physics_backend
from apexjax.sharding import make_mesh, replicate, split_over_devices

__all__ = [
    "TrainConfig",
    "TrainState",
    "build_task",
    "init_train_state",
    "make_evaluate",
    "make_train_step",
    "metrics_to_python",
    "physics_backend",
    "place_state",
    "replicated_sharding",
]

_T = TypeVar("_T")


def make_evaluate(
    config: TrainConfig,
    task: Task | None = None,
    num_episodes: int | None = None,
    num_expert_episodes: int | None = None,
) -> Callable[..., dict[str, jax.Array]]:
    """Jitted ``evaluate(policy_state, key, guidance_weight=0.0) -> metrics``: the policy
    alone over ``num_episodes`` (default ``config.num_envs``) fresh episodes and the guided
    expert over ``num_expert_episodes`` (default: as many; 0 leaves the expert out, and its
    metrics with it: the policy's episodes cost one network pass per step, the expert's a
    whole plan). ``guidance_weight`` is λ in ``progress``/``gap`` mode (a run's
    ``TrainState.guidance_weight``); the other modes set λ as in training. The episodes
    of each kind are the same for the same key, whatever the other kind's count."""
    task = build_task(config) if task is None else task
    n = config.num_envs if num_episodes is None else num_episodes
    n_exp = n if num_expert_episodes is None else num_expert_episodes
    for field, count, least in (("num_episodes", n, 1), ("num_expert_episodes", n_exp, 0)):
        if count < least:
            raise ConfigError(f"{field}: must be >= {least}, got {count}")
        if count % config.num_devices:
            raise ConfigError(
                f"{field}: {count} cannot be split evenly over num_devices={config.num_devices}"
            )
    run_episodes, run_policy_episodes = batched_episode_fns(config, task)

    def evaluate(
        pol: policy.PolicyState, key: jax.Array, guidance_weight: jax.Array | float = 0.0
    ) -> dict[str, jax.Array]:
        k_exp, k_pol = jax.random.split(key)
        alone = run_policy_episodes(pol, jax.random.split(k_pol, n))
        out = {"policy_return": jnp.mean(episode_returns(alone.costs))}
        if task.has_success:
            out["policy_success"] = jnp.mean(alone.success.astype(jnp.float32))
        if n_exp:
            lam0 = initial_weight(config.guidance, guidance_weight, True)
            expert = run_episodes(
                pol,
                jax.random.split(k_exp, n_exp),
                jnp.zeros((n_exp,), bool),
                lam0,
                jnp.bool_(True),
                jnp.bool_(True),  # a trained policy: its warm start, if the config has one
            )
            out["expert_return"] = jnp.mean(episode_returns(expert.costs))
            if task.has_success:
                out["expert_success"] = jnp.mean(expert.success.astype(jnp.float32))
        return out

    return jax.jit(evaluate)


def make_train_step(
    config: TrainConfig, task: Task | None = None
) -> Callable[[TrainState], tuple[TrainState, dict[str, jax.Array]]]:
    """One jitted APEX outer iteration: ``train_step(state) -> (state, metrics)``.

    ``metrics`` holds float scalars: expert/DAgger/policy returns and success rates, λ
    (mean and last), the SGD loss, dataset size, simulated control steps.
    """
    task = build_task(config) if task is None else task
    E, T = config.num_envs, task.episode_length
    polcfg = config.policy
    run_episodes, run_policy_episodes = batched_episode_fns(config, task)
    batched = config.dagger and config.relabel == "batched"
    segmented = config.dagger_segment > 0
    if config.dagger_segment > T:
        raise ConfigError(
            f"TrainConfig.dagger_segment: {config.dagger_segment} is longer than the "
            f"{T}-step episode; use 1..{T}, or 0 for DAgger episodes from a reset"
        )
    if config.dagger_segment_starts > T:
        raise ConfigError(
            f"TrainConfig.dagger_segment_starts: {config.dagger_segment_starts} is longer than "
            f"the {T}-step episode; use 1..{T}, or 0 for starts from every step"
        )
    S = config.dagger_segment_starts or T  # segments start at the expert's first S steps
    mesh = make_mesh(config.num_devices) if config.num_devices > 1 else None
    if batched:
        relabelled = episode_fns(config, task).relabelled
        run_relabelled = split_over_devices(
            lambda pol, keys, lam0, on, warm: jax.vmap(
                lambda k: relabelled(pol, k, lam0, on, warm)
            )(keys),
            mesh,
            (False, True, False, False, False),
        )
    if segmented:  # the expert episodes first, then DAgger segments from their states
        fns = episode_fns(config, task)
        run_recorded = split_over_devices(
            lambda pol, keys, lam0, on, warm: jax.vmap(
                lambda k: fns.recorded(pol, k, lam0, on, warm)
            )(keys),
            mesh,
            (False, True, False, False, False),
        )
        run_restarted = split_over_devices(
            lambda pol, keys, lam0, on, starts, warm: jax.vmap(
                lambda k: fns.restarted(pol, k, lam0, on, starts, warm)
            )(keys),
            mesh,
            (False, True, False, False, False, False),  # every device draws from all starts
        )

    def train_step(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        key, k_exp, k_dag, k_sgd, k_eval = jax.random.split(state.key, 5)
        pol, data, it = state.policy, state.dataset, state.iteration
        metrics: dict[str, jax.Array] = {}
        gcfg = config.guidance
        on = it >= gcfg.warmup_iterations
        warm = it >= config.warm_start_after  # the policy's warm start (warm_start="policy")
        lam0 = initial_weight(gcfg, state.guidance_weight, on)
        best = state.best_expert_cost
        untrained = state.untrained_policy_cost
        if gcfg.measures_untrained:  # C_0: the policy acting alone before its first update
            # its own key (folded in), so the other modes' keys, and results, stay as they were
            k_ref = jax.random.split(jax.random.fold_in(state.key, 0x6761), E)

            def measure(_):
                return -jnp.mean(episode_returns(run_policy_episodes(pol, k_ref).costs))

            untrained = jax.lax.cond(jnp.isnan(untrained), measure, lambda _: untrained, None)
        new_obs = []
        sims = jnp.float32(0.0)
        lam_all = []
        # (name, key, the policy acts?, dataset source) of each data-collecting phase
        phases = [("expert", k_exp, False, aggregator.SOURCE_EXPERT)] if config.expert_data else []
        if config.dagger:
            phases.append(("dagger", k_dag, True, aggregator.SOURCE_POLICY))
        # Both phases run as ONE vmap over their episodes (who acts is a per-episode flag):
        # one traced copy of the planner instead of two (compile time) and a batch twice
        # as large for the accelerator.
        if batched:  # the DAgger phase is rolled out first and labelled in one batch
            looped = [p for p in phases if not p[2]]
        elif segmented:  # the expert's episodes, then DAgger from their states
            looped = []
        else:
            looped = phases
        outs = []
        if segmented:
            expert, starts = run_recorded(pol, jax.random.split(k_exp, E), lam0, on, warm)
            flat = jax.tree.map(lambda x: x[:, :S].reshape(E * S, *x.shape[2:]), starts)
            dagger = run_restarted(pol, jax.random.split(k_dag, E), lam0, on, flat, warm)
            outs += [expert, dagger]
        if looped:
            keys = jnp.concatenate([jax.random.split(k, E) for _, k, _, _ in looped])
            acts = jnp.concatenate([jnp.full((E,), a) for _, _, a, _ in looped])
            all_out = run_episodes(pol, keys, acts, lam0, on, warm)
            outs += [
                Episode(*(x[i * E : (i + 1) * E] for x in all_out)) for i in range(len(looped))
            ]
        if batched:
            outs.append(run_relabelled(pol, jax.random.split(k_dag, E), lam0, on, warm))
        for (name, _, policy_acts, source), ep in zip(phases, outs, strict=True):
            flat_obs = ep.observations.reshape(E * T, -1)
            data = aggregator.add(data, flat_obs, ep.labels.reshape(E * T, -1), source, it)
            new_obs.append(flat_obs)
            metrics[f"{name}_return"] = jnp.mean(episode_returns(ep.costs))
            if not policy_acts:
                metrics["expert_success"] = jnp.mean(ep.success.astype(jnp.float32))
                mean_cost = -metrics["expert_return"]
                best = jnp.where(jnp.isfinite(mean_cost), jnp.minimum(best, mean_cost), best)
            sims = sims + jnp.sum(ep.simulated_steps).astype(jnp.float32)
            lam_all.append(ep.weights)
        pol = policy.update_normalizer(pol, jnp.concatenate(new_obs))
        # dataset_window: SGD draws from the rows of the last `dataset_window` iterations
        newest = None
        if config.dataset_window:
            newest = aggregator.rows_since(data, it - (config.dataset_window - 1))
        pol, loss = policy.train_steps(
            polcfg,
            pol,
            k_sgd,
            lambda k: aggregator.sample(data, k, polcfg.batch_size, newest),
            config.sgd_steps,
        )
        alone = run_policy_episodes(pol, jax.random.split(k_eval, E))
        lam_cat = jnp.concatenate([x.reshape(-1) for x in lam_all])
        policy_return = jnp.mean(episode_returns(alone.costs))
        next_lam = next_iteration_weight(
            gcfg,
            state.guidance_weight,
            best_expert_cost=best,
            policy_cost=-policy_return,
            untrained_policy_cost=untrained,
        )
        metrics.update(
            policy_return=policy_return,
            next_lambda=next_lam,
            policy_success=jnp.mean(alone.success.astype(jnp.float32)),
            lambda_mean=jnp.mean(lam_cat),
            lambda_last=lam_cat[-1],
            loss=loss,
            dataset_size=data.size.astype(jnp.float32),
            simulated_steps=sims,
        )
        if config.expert_data:
            metrics["best_expert_return"] = -best
        if gcfg.measures_untrained:
            metrics["untrained_policy_return"] = -untrained
        if not task.has_success:
            metrics.pop("expert_success", None)
            metrics.pop("policy_success")
        new_state = TrainState(
            policy=pol,
            dataset=data,
            key=key,
            iteration=it + 1,
            guidance_weight=next_lam,
            best_expert_cost=best,
            untrained_policy_cost=untrained,
        )
        return new_state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    if config.num_devices == 1:
        return jax.jit(train_step)
    # The state lives replicated on the mesh, in and out, so the step's output feeds its
    # next call (and an ahead-of-time compiled step) unchanged.
    rep = replicated_sharding(config)
    return jax.jit(train_step, in_shardings=rep, out_shardings=(rep, rep))


def replicated_sharding(config: TrainConfig) -> jax.sharding.Sharding:
    """Where a :class:`TrainState` of this config lives: replicated over its devices."""
    mesh = make_mesh(config.num_devices)
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def place_state(config: TrainConfig, tree: _T) -> _T:
    """``tree`` (a :class:`TrainState`, or any pytree fed to the jitted step or evaluation)
    moved to where :func:`make_train_step`'s step expects it: replicated on
    ``config.num_devices`` devices (those of all processes in a multi-process run);
    unchanged for one device."""
    if config.num_devices == 1:
        return tree
    return replicate(tree, replicated_sharding(config))


def metrics_to_python(metrics: dict[str, Any]) -> dict[str, float]:
    """Device scalars -> plain floats (one host transfer)."""
    host = jax.device_get(metrics)
    return {k: float(v) for k, v in host.items()}

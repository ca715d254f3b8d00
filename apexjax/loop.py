"""APEX: one jitted outer iteration (``make_train_step``) over pure pieces.

One iteration, all inside one ``jax.jit``, vmapped over ``num_envs`` parallel episodes:

1. Expert episodes: the guided iCEM planner acts. Each control step it plans from the
   current state with (a) the policy's own closed-loop rollout (and optional noisy copies)
   injected as candidates and (b) the guidance cost weighted by λ. In ``progress`` mode (the
   default) λ is fixed for the iteration, set at the end of the previous one from the policy's
   evaluation against the best expert so far; in the per-step modes it comes from
   :func:`apexjax.guidance.adaptive_weight` on the previous plan. The (observation, planner
   action) pairs are behaviour-cloning data.
2. DAgger episodes: the policy acts; at every visited state the guided planner plans
   (sequentially along the trajectory, warm-started from the previous step's plan) and its
   action is the label.
3. Aggregation into the fixed-capacity dataset, normaliser update with the new observations.
4. ``sgd_steps`` minibatch steps on the whole aggregated dataset (warm start).
5. Evaluation of the updated policy alone (no planner) on fresh episodes, then the next
   iteration's λ (``progress`` mode).

Returns are ``-sum(cost)`` over an episode. The Python side (:mod:`apexjax.train`) only
iterates, logs and checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import jax
import jax.numpy as jnp
from flax import struct

from apexjax import aggregator, policy
from apexjax.configs import (
    ConfigError,
    build_checked,
    check_bool,
    check_choice,
    check_float,
    check_int,
    parse_override_values,
)
from apexjax.envs import config_class
from apexjax.envs import make as make_task
from apexjax.envs.base import Task
from apexjax.envs.mujoco_task import BACKENDS, resolve_backend
from apexjax.guidance import GuidanceConfig, adaptive_weight, guidance_distance, make_guidance_cost
from apexjax.planning import icem
from apexjax.planning.noise import colored_noise
from apexjax.planning.rollout import rollout_closed_loop, rollout_open_loop
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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """APEX training settings (every field is validated when the config is built).

    Attributes:
      task: registered task name.
      seed: PRNG seed of the whole run.
      iterations: outer iterations for :func:`apexjax.train.train`.
      num_envs: parallel episodes per phase (expert, DAgger, evaluation).
      episode_length: control steps per training episode; 0 uses the task's own length.
      backend: physics of a MuJoCo task: "native" (MuJoCo's C library through a host
        callback: the choice on CPU), "mjx" (traced into XLA: the choice on GPU/TPU) or
        "auto" (native where JAX's default backend is the CPU, MJX elsewhere). A run
        records the backend it used. Pure-JAX tasks and Brax/Playground adapters take
        "auto" (adapters also "mjx").
      task_options: ``"field=value"`` settings of the task's own config (its fields are
        listed by ``apexjax.envs.config_class(task)``), e.g. ``("contacts=hand_door",)``;
        checked against the task's config when this config is built.
      expert_data: add the expert episodes' pairs (behaviour cloning data).
      dagger: run DAgger episodes (policy acts, planner relabels).
      relabel: how the DAgger episodes are labelled. ``"sequential"``: the planner plans at
        each visited state as the policy acts, warm-started from its plan of the previous
        state (shifted mean and elites), as an expert episode does. ``"batched"``: the
        policy's whole episode is rolled out first, then the planner labels all of its T
        states at once (one vmap, every plan cold-started): no sequential dependency
        between labels, so an accelerator gets T times the batch. Needs a guidance mode
        whose λ is fixed over the iteration (off, fixed, progress, gap).
      policy_candidates: policy rollouts in the planner population: 0 (none), 1 (the
        policy's own closed-loop rollout), or more (plus noisy copies of it).
      candidate_noise: std (fraction of the half action range) of the colored noise added
        to the noisy policy candidates.
      sgd_steps: minibatch steps per iteration.
      dataset_capacity: rows in the aggregated dataset (allocated once; ring overwrite).
      num_devices: devices the episodes are split over (:mod:`apexjax.sharding`; in a
        multi-process run, the devices of all processes); the episodes of each step
        (expert + DAgger, and evaluation) must divide evenly.
        The policy, the dataset and SGD are replicated: the dataset is small next to the
        simulation, and replicated SGD needs no gradient exchange.
      planner: the expert's iCEM settings. Left out (None), the task's own: the defaults
        of :class:`~apexjax.planning.icem.ICEMConfig` with the task's colored-noise β
        (:func:`apexjax.envs.planner_beta`), so ``TrainConfig(task=T)`` plans as
        ``apexjax train --task T`` does. Its ``num_extra_candidates`` is derived from
        ``policy_candidates`` (:attr:`expert_planner` is the planner the loop runs); give 0
        or the same count.
      policy, guidance: the sub-configs.
    """

    task: str = "cartpole_swingup"
    seed: int = 0
    iterations: int = 10
    num_envs: int = 4
    episode_length: int = 0
    backend: Literal["auto", "mjx", "native"] = "auto"
    task_options: tuple[str, ...] = ()
    expert_data: bool = True
    dagger: bool = True
    relabel: Literal["sequential", "batched"] = "sequential"
    policy_candidates: int = 1
    candidate_noise: float = 0.1
    sgd_steps: int = 300
    dataset_capacity: int = 100_000
    num_devices: int = 1
    planner: icem.ICEMConfig = None  # type: ignore[assignment]  # None: the task's (see above)
    policy: policy.PolicyConfig = dataclasses.field(default_factory=policy.PolicyConfig)
    guidance: GuidanceConfig = dataclasses.field(default_factory=GuidanceConfig)

    def __post_init__(self) -> None:
        c = "TrainConfig"
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError(f"{c}.task: expected a task name (a str), got {self.task!r}")
        ints = {
            "seed": 0,
            "iterations": 1,
            "num_envs": 1,
            "episode_length": 0,
            "policy_candidates": 0,
            "sgd_steps": 1,
            "dataset_capacity": 1,
            "num_devices": 1,
        }
        for name, lo in ints.items():
            check_int(f"{c}.{name}", getattr(self, name), ge=lo)
        check_float(f"{c}.candidate_noise", self.candidate_noise, ge=0)
        check_bool(f"{c}.expert_data", self.expert_data)
        check_bool(f"{c}.dagger", self.dagger)
        check_choice(f"{c}.backend", self.backend, BACKENDS)
        check_choice(f"{c}.relabel", self.relabel, ("sequential", "batched"))
        if self.planner is None:
            from apexjax.envs import planner_beta  # the task's β; UnknownTaskError if unknown

            object.__setattr__(self, "planner", icem.ICEMConfig(beta=planner_beta(self.task)))
        for name, cls in (
            ("planner", icem.ICEMConfig),
            ("policy", policy.PolicyConfig),
            ("guidance", GuidanceConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"{c}.{name}: expected an {cls.__name__}, got {getattr(self, name)!r}"
                )
        if self.backend != "auto":
            _check_backend(self.task, self.backend)
        if self.task_options:
            _task_overrides(self.task, self.task_options)  # fails early on a bad option
        if self.relabel == "batched" and self.guidance.mode in ("relative", "normalized"):
            raise ConfigError(
                f"TrainConfig.relabel: 'batched' labels all states at once, so λ cannot adapt "
                f"per step as guidance.mode={self.guidance.mode!r} does; use 'sequential' or a "
                "mode with one λ per iteration (off, fixed, progress, gap)"
            )
        if not (self.expert_data or self.dagger):
            raise ConfigError("TrainConfig: expert_data and dagger cannot both be off (no data)")
        if self.num_envs % self.num_devices:
            raise ConfigError(
                f"TrainConfig.num_envs: {self.num_envs} episodes cannot be split evenly over "
                f"num_devices={self.num_devices}; use a multiple of {self.num_devices}"
            )
        if self.planner.num_extra_candidates not in (0, self.policy_candidates):
            raise ConfigError(
                f"TrainConfig.planner.num_extra_candidates: {self.planner.num_extra_candidates} "
                f"but policy_candidates={self.policy_candidates}; the expert's extra candidates "
                "are the policy's, so leave it 0 (derived) or set policy_candidates instead"
            )
        if self.guidance.per_iteration and not self.expert_data:
            raise ConfigError(
                f"TrainConfig.guidance.mode: {self.guidance.mode!r} needs expert_data=True (it compares the "
                "policy with the best expert episode so far); use 'fixed', 'relative' or 'off'"
            )
        if self.guidance.mode == "relative" and self.policy_candidates == 0:
            raise ConfigError(
                "TrainConfig.guidance.mode: 'relative' needs policy_candidates >= 1 (it compares "
                "the policy's own candidate with the best one); use 'fixed', 'normalized' or 'off'"
            )

    @property
    def expert_planner(self) -> icem.ICEMConfig:
        """The planner the expert runs: :attr:`planner` with one extra candidate slot per
        policy candidate (a static shape, derived here rather than stored)."""
        return dataclasses.replace(self.planner, num_extra_candidates=self.policy_candidates)


@struct.dataclass
class TrainState:
    """Everything a resumed run needs. ``key`` is raw uint32 key data (checkpoint-friendly).

    ``guidance_weight`` is λ for the next iteration in ``progress`` and ``gap`` modes
    (unused by the per-step modes); ``best_expert_cost`` is the lowest mean expert episode
    cost so far (+inf before the first iteration); ``untrained_policy_cost`` the mean
    episode cost of the untrained policy acting alone (``gap`` mode measures it in the first
    iteration; NaN before that and in the other modes).
    """

    policy: policy.PolicyState
    dataset: aggregator.Dataset
    key: jax.Array
    iteration: jax.Array
    guidance_weight: jax.Array
    best_expert_cost: jax.Array
    untrained_policy_cost: jax.Array


def _check_backend(task: str, backend: str) -> None:
    """ConfigError unless ``task`` can run on ``backend`` (checked without building it)."""
    if task.startswith(("brax:", "playground:")):
        if backend == "native":
            raise ConfigError(
                f"TrainConfig.backend: 'native' is not available for {task!r}, a wrapped "
                "Brax/Playground env (it steps MJX itself); use 'mjx' or 'auto'"
            )
        return
    try:
        cls = config_class(task)
    except ConfigError:
        return  # an unknown task fails with its own message when the task is built
    if "backend" not in {f.name for f in dataclasses.fields(cls)}:
        raise ConfigError(
            f"TrainConfig.backend: {backend!r} is not available for {task!r}, a pure-JAX task "
            "with no physics backend; use 'auto'"
        )


def physics_backend(config: TrainConfig) -> str:
    """The physics ``config``'s task runs on, without building it: "native" or "mjx" for a
    MuJoCo task (``config.backend`` resolved), "mjx" for a Brax/Playground adapter, "jax"
    for a pure-JAX task."""
    if config.task.startswith(("brax:", "playground:")):
        return "mjx"
    cls = config_class(config.task)
    if "backend" not in {f.name for f in dataclasses.fields(cls)}:
        return "jax"
    return resolve_backend(config.backend)


def _task_overrides(task: str, options: tuple[str, ...]) -> dict[str, Any]:
    """``task_options`` -> typed overrides of ``task``'s config (ConfigError if invalid)."""
    if not all(isinstance(o, str) for o in options):
        raise ConfigError(
            f"TrainConfig.task_options: expected 'field=value' strings, got {options!r}"
        )
    try:
        cls = config_class(task)
    except ConfigError as e:
        raise ConfigError(f"TrainConfig.task_options: {e}") from None
    values = parse_override_values(cls, options)
    for field in ("episode_length", "backend"):
        if field in values:
            raise ConfigError(f"TrainConfig.task_options: set {field} with TrainConfig.{field}")
    build_checked(cls(), values)  # the task config's own validation
    return values


def build_task(config: TrainConfig) -> Task:
    """The task named in ``config`` with its episode length and ``task_options``."""
    overrides = _task_overrides(config.task, config.task_options) if config.task_options else {}
    if config.episode_length:
        overrides["episode_length"] = config.episode_length
    return make_task(config.task, backend=config.backend, **overrides)


def init_train_state(config: TrainConfig, task: Task) -> TrainState:
    """Fresh policy, empty dataset, the run's PRNG key."""
    key = jax.random.PRNGKey(config.seed)
    key, k_pol = jax.random.split(key)
    pol = policy.init(config.policy, k_pol, task.observation_dim, task.action_low, task.action_high)
    data = aggregator.create(config.dataset_capacity, task.observation_dim, task.action_dim)
    return TrainState(
        policy=pol,
        dataset=data,
        key=key,
        iteration=jnp.zeros((), jnp.int32),
        guidance_weight=jnp.zeros((), jnp.float32),
        best_expert_cost=jnp.full((), jnp.inf, jnp.float32),
        untrained_policy_cost=jnp.full((), jnp.nan, jnp.float32),
    )


def _initial_weight(config: GuidanceConfig, stored: jax.Array, on: jax.Array) -> jax.Array:
    """λ at the start of an episode: the stored per-iteration λ (``progress``, ``gap``), λ0
    (``fixed``) or 0 (per-step adaptive modes start unguided); 0 during warm-up."""
    if config.per_iteration:
        lam = jnp.asarray(stored, jnp.float32)
    elif config.mode == "fixed":
        lam = jnp.float32(config.weight)
    else:
        lam = jnp.float32(0.0)
    return jnp.where(on, lam, 0.0)


def _episode_returns(costs: jax.Array) -> jax.Array:
    """``[E, T] -> [E]``: minus the summed cost (non-finite steps count as NaN)."""
    return -jnp.sum(costs, axis=-1)


def _episode_fns(config: TrainConfig, task: Task):
    """``(episode(pol, key, policy_acts), policy_episode(pol, key))`` for one env each."""
    pcfg, gcfg, polcfg = config.expert_planner, config.guidance, config.policy
    T, h = task.episode_length, pcfg.horizon
    M = config.policy_candidates
    low, high = jnp.asarray(task.action_low), jnp.asarray(task.action_high)

    def policy_obs_fn(pol: policy.PolicyState) -> Callable[[jax.Array], jax.Array]:
        return lambda obs: policy.act(polcfg, pol, obs)

    def guided_plan(pol, key, pstate, env_state, lam, on):
        """Plan from ``env_state`` with policy candidates and guidance; returns λ for next."""
        pi = policy_obs_fn(pol)
        k_plan, k_noise = jax.random.split(key)
        cands = None
        if M:
            own, _, _, _ = rollout_closed_loop(
                task, env_state, lambda s: pi(task.observation(s)), h
            )
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

            _, d, _, _ = rollout_open_loop(task, env_state, info.best_actions, unweighted)
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

    def episode(pol, key, policy_acts: jax.Array | bool, lam0: jax.Array, on: jax.Array):
        """One episode; returns per-step obs [T,O], labels [T,A], costs [T], λ [T], final.

        ``lam0`` is λ at the first step; ``on`` (bool) is False during guidance warm-up."""
        k_reset, k_steps = jax.random.split(key)
        env0 = task.reset(k_reset)
        pstate0 = icem.init(pcfg, (task.action_low, task.action_high))
        pi = policy_obs_fn(pol)
        on = jnp.asarray(on, jnp.float32)

        def step(carry, k):
            env_state, pstate, lam = carry
            obs = task.observation(env_state)
            label, pstate, info, lam_next = guided_plan(pol, k, pstate, env_state, lam, on)
            act = jnp.where(policy_acts, pi(obs), label)
            nxt = task.step(env_state, act)
            cost = task.cost(env_state, act, nxt)
            out = (obs, label, cost, lam, info.num_simulated_steps)
            return (nxt, pstate, lam_next), out

        (final, _, _), (obs, labels, costs, lams, sims) = jax.lax.scan(
            step, (env0, pstate0, jnp.asarray(lam0, jnp.float32)), jax.random.split(k_steps, T)
        )
        return obs, labels, costs, lams, jnp.sum(sims), task.success(final)

    def relabelled_episode(pol, key, lam0: jax.Array, on: jax.Array):
        """DAgger with batched relabelling: the policy acts for T steps, then the guided
        planner labels every visited state at once (cold start). Same outputs as
        ``episode``."""
        k_reset, k_plan = jax.random.split(key)
        pi = policy_obs_fn(pol)

        def act(s, _):
            a = jnp.clip(pi(task.observation(s)), low, high)
            s2 = task.step(s, a)
            return s2, (s, task.cost(s, a, s2))

        final, (states, costs) = jax.lax.scan(act, task.reset(k_reset), None, length=T)
        pstate0 = icem.init(pcfg, (task.action_low, task.action_high))
        lam = jnp.asarray(lam0, jnp.float32)
        on = jnp.asarray(on, jnp.float32)

        def label(s, k):
            a, _, info, _ = guided_plan(pol, k, pstate0, s, lam, on)
            return a, info.num_simulated_steps

        labels, sims = jax.vmap(label)(states, jax.random.split(k_plan, T))
        obs = jax.vmap(task.observation)(states)
        return obs, labels, costs, jnp.full((T,), lam), jnp.sum(sims), task.success(final)

    def policy_episode(pol, key):
        """Policy alone (no planner): costs [T], success."""
        pi = policy_obs_fn(pol)
        env0 = task.reset(key)
        _, _, costs, final = rollout_closed_loop(task, env0, lambda s: pi(task.observation(s)), T)
        return costs, task.success(final)

    return episode, policy_episode, relabelled_episode


def _batched_episode_fns(config: TrainConfig, task: Task):
    """Episodes over a leading batch axis of keys, split over ``config.num_devices``:

    ``run_episodes(pol, keys [B], policy_acts [B], lam0, on)`` (the guided planner in the
    loop) and ``run_policy_episodes(pol, keys [B])`` (the policy alone). The policy, λ and
    the warm-up flag are replicated on every device.
    """
    episode, policy_episode, _ = _episode_fns(config, task)
    mesh = make_mesh(config.num_devices) if config.num_devices > 1 else None
    run_episodes = split_over_devices(
        lambda pol, keys, acts, lam0, on: jax.vmap(lambda k, a: episode(pol, k, a, lam0, on))(
            keys, acts
        ),
        mesh,
        (False, True, True, False, False),
    )
    run_policy_episodes = split_over_devices(
        lambda pol, keys: jax.vmap(lambda k: policy_episode(pol, k))(keys), mesh, (False, True)
    )
    return run_episodes, run_policy_episodes


def make_evaluate(
    config: TrainConfig, task: Task | None = None, num_episodes: int | None = None
) -> Callable[..., dict[str, jax.Array]]:
    """Jitted ``evaluate(policy_state, key, guidance_weight=0.0) -> metrics``: the guided
    expert and the policy alone, each over ``num_episodes`` (default ``config.num_envs``)
    fresh episodes. ``guidance_weight`` is λ in ``progress``/``gap`` mode (a run's
    ``TrainState.guidance_weight``); the other modes set λ as in training."""
    task = build_task(config) if task is None else task
    n = config.num_envs if num_episodes is None else num_episodes
    if n % config.num_devices:
        raise ConfigError(
            f"num_episodes: {n} cannot be split evenly over num_devices={config.num_devices}"
        )
    run_episodes, run_policy_episodes = _batched_episode_fns(config, task)

    def evaluate(
        pol: policy.PolicyState, key: jax.Array, guidance_weight: jax.Array | float = 0.0
    ) -> dict[str, jax.Array]:
        k_exp, k_pol = jax.random.split(key)
        lam0 = _initial_weight(config.guidance, guidance_weight, True)
        _, _, costs, _, _, succ = run_episodes(
            pol, jax.random.split(k_exp, n), jnp.zeros((n,), bool), lam0, jnp.bool_(True)
        )
        p_costs, p_succ = run_policy_episodes(pol, jax.random.split(k_pol, n))
        out = {
            "expert_return": jnp.mean(_episode_returns(costs)),
            "policy_return": jnp.mean(_episode_returns(p_costs)),
        }
        if task.has_success:
            out["expert_success"] = jnp.mean(succ.astype(jnp.float32))
            out["policy_success"] = jnp.mean(p_succ.astype(jnp.float32))
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
    run_episodes, run_policy_episodes = _batched_episode_fns(config, task)
    batched = config.dagger and config.relabel == "batched"
    if batched:
        relabelled = _episode_fns(config, task)[2]
        run_relabelled = split_over_devices(
            lambda pol, keys, lam0, on: jax.vmap(lambda k: relabelled(pol, k, lam0, on))(keys),
            make_mesh(config.num_devices) if config.num_devices > 1 else None,
            (False, True, False, False),
        )

    def train_step(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        key, k_exp, k_dag, k_sgd, k_eval = jax.random.split(state.key, 5)
        pol, data, it = state.policy, state.dataset, state.iteration
        metrics: dict[str, jax.Array] = {}
        gcfg = config.guidance
        on = it >= gcfg.warmup_iterations
        lam0 = _initial_weight(gcfg, state.guidance_weight, on)
        best = state.best_expert_cost
        untrained = state.untrained_policy_cost
        if gcfg.mode == "gap":  # C_0: the policy acting alone before its first update
            # its own key (folded in), so the other modes' keys, and results, stay as they were
            k_ref = jax.random.split(jax.random.fold_in(state.key, 0x6761), E)

            def measure(_):
                c, _ = run_policy_episodes(pol, k_ref)
                return -jnp.mean(_episode_returns(c))

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
        else:
            looped = phases
        outs = []
        if looped:
            keys = jnp.concatenate([jax.random.split(k, E) for _, k, _, _ in looped])
            acts = jnp.concatenate([jnp.full((E,), a) for _, _, a, _ in looped])
            all_out = run_episodes(pol, keys, acts, lam0, on)
            outs += [tuple(x[i * E : (i + 1) * E] for x in all_out) for i in range(len(looped))]
        if batched:
            outs.append(run_relabelled(pol, jax.random.split(k_dag, E), lam0, on))
        for (name, _, policy_acts, source), out in zip(phases, outs, strict=True):
            obs, labels, costs, lams, n, succ = out
            flat_obs = obs.reshape(E * T, -1)
            data = aggregator.add(data, flat_obs, labels.reshape(E * T, -1), source, it)
            new_obs.append(flat_obs)
            metrics[f"{name}_return"] = jnp.mean(_episode_returns(costs))
            if not policy_acts:
                metrics["expert_success"] = jnp.mean(succ.astype(jnp.float32))
                mean_cost = -metrics["expert_return"]
                best = jnp.where(jnp.isfinite(mean_cost), jnp.minimum(best, mean_cost), best)
            sims = sims + jnp.sum(n).astype(jnp.float32)
            lam_all.append(lams)
        pol = policy.update_normalizer(pol, jnp.concatenate(new_obs))
        pol, loss = policy.train_steps(
            polcfg,
            pol,
            k_sgd,
            lambda k: aggregator.sample(data, k, polcfg.batch_size),
            config.sgd_steps,
        )
        costs, succ = run_policy_episodes(pol, jax.random.split(k_eval, E))
        lam_cat = jnp.concatenate([x.reshape(-1) for x in lam_all])
        policy_return = jnp.mean(_episode_returns(costs))
        if gcfg.per_iteration:
            next_lam = adaptive_weight(
                gcfg,
                best_task_cost=best,
                policy_task_cost=-policy_return,
                untrained_task_cost=untrained,
            )
            next_lam = jnp.where(jnp.isfinite(best), next_lam, 0.0)
        else:
            next_lam = state.guidance_weight
        metrics.update(
            policy_return=policy_return,
            next_lambda=next_lam,
            policy_success=jnp.mean(succ.astype(jnp.float32)),
            lambda_mean=jnp.mean(lam_cat),
            lambda_last=lam_cat[-1],
            loss=loss,
            dataset_size=data.size.astype(jnp.float32),
            simulated_steps=sims,
        )
        if config.expert_data:
            metrics["best_expert_return"] = -best
        if gcfg.mode == "gap":
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

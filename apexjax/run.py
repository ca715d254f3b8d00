"""A training run's config and state: :class:`TrainConfig` (every setting, validated when
built), :class:`TrainState` (everything a resumed run needs), the task a config names
(:func:`build_task`) and a fresh state (:func:`init_train_state`).

:func:`apexjax.presets.train_config` builds a config as the command line does (the task's
defaults, a preset, ``--set`` items); :mod:`apexjax.loop` turns one into the jitted step and
:func:`apexjax.driver.fit` runs it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

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
from apexjax.guidance import GuidanceConfig
from apexjax.planning import icem

__all__ = [
    "TrainConfig",
    "TrainState",
    "build_task",
    "init_train_state",
    "physics_backend",
]


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
      dagger_segment: where DAgger episodes start. 0 (the default, the paper's): at a
        reset, each running the task's T steps. L > 0: in segments of L steps, each
        starting at a state drawn uniformly from those this iteration's expert episodes
        visited, with the expert's planner memory at that state (so the first label is
        warm-started as the expert's was); T/L segments per DAgger episode, so the label
        count is the same: DAgger with restarts from the expert's states, so the labels
        go to the policy's mistakes along the whole expert trajectory (its later phases
        included, as a curriculum on a sparse task), and a policy caught in an absorbing
        state spends at most L steps there. Needs expert data and sequential relabelling.
      dagger_segment_starts: with ``dagger_segment`` > 0, draw the segments' start states
        from the first ``dagger_segment_starts`` steps of each expert episode only (0, the
        default: from all T). On a task decided early in the episode (the door's latch and
        pull come in its first 20-70 of 200 steps) this puts the DAgger labels where the
        task is decided instead of where it is already done.
      label: the dataset's target at each labelled state. ``"executed"``: the action the
        guided planner executes (its best sequence's first action under the planner's
        ``execute="best"``), the paper's choice. ``"mean"``: the first action of the
        planner's mean after its last iteration, while the expert still executes its
        ``execute`` choice, so expert episodes follow the same states either way. The best
        sample of a wide search is one draw of a noisy choice; the mean is its expected
        value, a smoother function of the state to regress on.
      warm_start: where the expert's planner samples at each control step. ``"planner"``
        (the default, iCEM's): around its own mean of the previous step, shifted one step.
        ``"policy"``: around the policy's own closed-loop rollout from the current state
        (its elites of the previous step are still shifted in), so that the planner's
        answer at a state is an improvement of what the policy does there rather than of
        a plan the planner happened to commit to earlier. Measured on half-cheetah
        (``experiments/label_noise.py``, docs/experiments.md): the paper planner's mean
        label is 16 % run-to-run noise when planned from the state alone, 3 % given the
        memory it carries, and varies between states twice as much with that memory as
        without, which a policy that sees only the state cannot know; around a trained
        policy's rollout the expert returned at least as much, its label 7 % noise either
        way and close to the policy's own action.
      warm_start_after: outer iterations at the start that use the planner's own mean
        before ``warm_start="policy"`` takes over (an untrained policy's rollout is a
        poor plan to sample around).
      policy_candidates: policy rollouts in the planner population: 0 (none), 1 (the
        policy's own closed-loop rollout), or more (plus noisy copies of it).
      candidate_noise: std (fraction of the half action range) of the colored noise added
        to the noisy policy candidates.
      sgd_steps: minibatch steps per iteration.
      dataset_capacity: rows in the aggregated dataset (allocated once; ring overwrite).
      dataset_window: SGD draws only from the rows of the newest ``dataset_window`` outer
        iterations (this one included); 0 (default): from every row the dataset holds. The
        early iterations' labels (a weakly guided planner, states of an untrained policy)
        disagree most; a window drops them from the fit without changing the state's
        shapes, so it is one of the settings a resumed run may change.
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
    dagger_segment: int = 0
    dagger_segment_starts: int = 0
    warm_start: Literal["planner", "policy"] = "planner"
    warm_start_after: int = 1
    label: Literal["executed", "mean"] = "executed"
    policy_candidates: int = 1
    candidate_noise: float = 0.1
    sgd_steps: int = 300
    dataset_capacity: int = 100_000
    dataset_window: int = 0
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
            "dagger_segment": 0,
            "dagger_segment_starts": 0,
            "warm_start_after": 0,
            "policy_candidates": 0,
            "sgd_steps": 1,
            "dataset_capacity": 1,
            "dataset_window": 0,
            "num_devices": 1,
        }
        for name, lo in ints.items():
            check_int(f"{c}.{name}", getattr(self, name), ge=lo)
        check_float(f"{c}.candidate_noise", self.candidate_noise, ge=0)
        check_bool(f"{c}.expert_data", self.expert_data)
        check_bool(f"{c}.dagger", self.dagger)
        check_choice(f"{c}.backend", self.backend, BACKENDS)
        check_choice(f"{c}.relabel", self.relabel, ("sequential", "batched"))
        check_choice(f"{c}.label", self.label, ("executed", "mean"))
        check_choice(f"{c}.warm_start", self.warm_start, ("planner", "policy"))
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
        if self.dagger_segment and not (self.dagger and self.expert_data):
            raise ConfigError(
                f"TrainConfig.dagger_segment: {self.dagger_segment} starts DAgger segments at "
                "states of the expert episodes, so it needs dagger=True and expert_data=True; "
                "use 0 (DAgger episodes from a reset)"
            )
        if self.dagger_segment_starts and not self.dagger_segment:
            raise ConfigError(
                f"TrainConfig.dagger_segment_starts: {self.dagger_segment_starts} picks where "
                "DAgger segments start, so it needs dagger_segment > 0; use 0"
            )
        if self.dagger_segment and self.relabel == "batched":
            raise ConfigError(
                f"TrainConfig.dagger_segment: {self.dagger_segment} works with "
                "relabel='sequential' only; use 0 with 'batched'"
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

    ``guidance_weight`` is λ for the next iteration in the per-iteration modes
    (unused by the per-step modes); ``best_expert_cost`` is the lowest mean expert episode
    cost so far (+inf before the first iteration); ``untrained_policy_cost`` the mean
    episode cost of the untrained policy acting alone (``gap`` and ``progress_gap``
    measure it in the first iteration; NaN before that and in the other modes).
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

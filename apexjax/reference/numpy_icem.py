"""A reference iCEM written plainly in NumPy on native MuJoCo, the way the original ran.

This is an independent second implementation of the planner in
:mod:`apexjax.planning.icem`, used as the baseline of ``apexjax bench`` and as a
correctness check: given the same options (any object with the fields of
:class:`apexjax.planning.icem.ICEMConfig`), the same task and the same start state, it
must reach the same return within noise. It runs on the CPU simulator: every iteration's
population is simulated from the environment's current state by a persistent
``mujoco.rollout.Rollout`` thread pool (one ``MjData`` per thread), and the task cost is
computed in NumPy from the rolled-out states.

One control step is ``frame_skip`` physics steps with the action held, as in apexjax's
tasks; costs are evaluated on the state at the end of each control step (and, for the
half-cheetah's forward velocity, the state before it). The cost, success and reset
functions here are written again, in NumPy, from the task definitions: they mirror
apexjax's ``cartpole_swingup``, ``pendulum_swingup``, ``halfcheetah_running`` and the
unshaped ``door`` (the tests compare them with the JAX tasks). The half-cheetah and door
models are edited at load time by apexjax's tasks, so their twins take the task's
``mj_model`` (:func:`native_task_from`).

Not supported (APEX-only extension points): ``num_extra_candidates > 0``.

This module imports no JAX: it runs where only NumPy and MuJoCo are installed.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import mujoco
import mujoco.rollout
import numpy as np

__all__ = [
    "EpisodeResult",
    "ICEMOptions",
    "NativeTask",
    "NumpyICEM",
    "cartpole_cost",
    "colored_noise",
    "door_cost",
    "halfcheetah_cost",
    "native_task",
    "native_task_from",
    "num_keep",
    "pendulum_cost",
    "population_sizes",
    "run_episode",
    "run_mpc",
    "simulated_per_step",
    "time_raw_rollouts",
]

_log = logging.getLogger(__name__)

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class ICEMOptions(Protocol):
    """The planner options read here: the fields of ``apexjax``'s ``ICEMConfig``."""

    population: int
    decay: float
    iterations: int
    elites: int
    horizon: int
    beta: float
    keep_fraction: float
    keep_elites: bool
    shift_elites: bool
    use_mean_actions: bool
    momentum: float
    init_std: float
    execute: str
    cost_aggregation: str
    num_extra_candidates: int
    sampling: str
    noise_normalization: str


# --------------------------------------------------------------------------- budget
def population_sizes(config: ICEMOptions) -> list[int]:
    """Sequences sampled at each iteration: N, then max(2K, int(previous / gamma))."""
    sizes = [int(config.population)]
    while len(sizes) < config.iterations:
        sizes.append(max(2 * config.elites, int(sizes[-1] / config.decay)))
    return sizes


def num_keep(config: ICEMOptions) -> int:
    """int(K * xi): elites kept across iterations and shifted across control steps."""
    return int(config.elites * config.keep_fraction)


def simulated_per_step(config: ICEMOptions) -> int:
    """Control steps simulated per planning call: (sum of N_i + shifted elites) * h."""
    shifted = num_keep(config) if config.shift_elites else 0
    return (sum(population_sizes(config)) + shifted) * config.horizon


# --------------------------------------------------------------------------- noise
def colored_noise(
    rng: np.random.Generator,
    beta: float,
    shape: tuple[int, ...],
    time_axis: int = -2,
    normalization: str = "exact",
) -> np.ndarray:
    """Unit-variance Gaussian noise whose power spectrum falls as 1/f^beta along time.

    Timmer & Koenig's method, as in the iCEM authors' ``colorednoise`` package: draw
    complex Gaussian Fourier coefficients, scale them by f^(-beta/2) (the zero frequency
    gets the lowest resolved frequency's scale), make the zero and (even length) Nyquist
    coefficients real, and invert the real FFT. The result is divided by its exact
    standard deviation, so every sample has variance 1 for any beta; with
    ``normalization="colorednoise"``, by the package's own normaliser instead (2/n times
    the root sum of squares of the non-zero frequencies' scales, the even-length Nyquist
    one halved), which leaves out the zero frequency's share.

    Args:
      rng: NumPy random generator.
      beta: spectral exponent, >= 0 (0 is white noise).
      shape: output shape, e.g. ``(N, h, d)``.
      time_axis: the axis the spectrum is shaped along.
      normalization: ``"exact"`` or ``"colorednoise"``.

    Returns:
      float64 array of ``shape``, independent along every axis but ``time_axis``.
    """
    shape = tuple(int(s) for s in shape)
    axis = time_axis % len(shape)
    n = shape[axis]
    if n <= 1:
        return rng.standard_normal(shape)
    freqs = np.fft.rfftfreq(n)
    freqs[0] = 1.0 / n
    amp = freqs ** (-beta / 2.0)
    lead = shape[:axis] + shape[axis + 1 :]
    real = rng.standard_normal((*lead, freqs.size)) * amp
    imag = rng.standard_normal((*lead, freqs.size)) * amp
    real[..., 0] *= math.sqrt(2.0)
    imag[..., 0] = 0.0
    even = n % 2 == 0
    if even:
        real[..., -1] *= math.sqrt(2.0)
        imag[..., -1] = 0.0
    # variance of one output sample: each complex-conjugate pair of bins contributes
    # 4 amp^2 / n^2, the real DC (and Nyquist) bins 2 amp^2 / n^2
    paired = amp[1:-1] if even else amp[1:]
    var = 4.0 * np.sum(paired**2) + 2.0 * amp[0] ** 2
    if even:
        var += 2.0 * amp[-1] ** 2
    if normalization == "colorednoise":
        w = amp[1:].copy()
        if even:
            w[-1] /= 2.0
        var = 4.0 * np.sum(w**2)
    elif normalization != "exact":
        raise ValueError(f"normalization: {normalization!r}, allowed 'exact', 'colorednoise'")
    y = np.fft.irfft(real + 1j * imag, n=n, axis=-1) * n / math.sqrt(var)
    return np.moveaxis(y, -1, axis)


# --------------------------------------------------------------------------- tasks
#: ``(qpos', qvel', action, qpos) -> cost``: the state after a control step, its action,
#: and the qpos before it; vectorised over leading axes.
CostFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def cartpole_cost(
    qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray, *, action_cost: float = 0.01
) -> np.ndarray:
    """Cart-pole swing-up cost of the state reached by a control step.

    ``0.8 (1 - cos theta) / 2 + 0.2 (x / 2)^2 + action_cost * |a|^2`` with ``qpos = [x,
    theta]`` (theta 0 upright) after the step; ``qpos [..., 2]``, ``action [..., A]``.
    """
    del qvel
    upright = (1.0 - np.cos(qpos[..., 1])) / 2.0
    centred = (qpos[..., 0] / 2.0) ** 2
    return 0.8 * upright + 0.2 * centred + action_cost * np.sum(action**2, axis=-1)


def pendulum_cost(
    qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray, *, action_cost: float = 0.001
) -> np.ndarray:
    """Pendulum swing-up cost: ``(1 + cos q) / 2 + action_cost * |a|^2`` (q 0 hangs down)."""
    del qvel
    return (1.0 + np.cos(qpos[..., 0])) / 2.0 + action_cost * np.sum(action**2, axis=-1)


def halfcheetah_cost(
    qpos: np.ndarray,
    qvel: np.ndarray,
    action: np.ndarray,
    prev_qpos: np.ndarray,
    *,
    dt: float,
    action_cost: float = 0.1,
    flip_cost: float = 10.0,
) -> np.ndarray:
    """Half-cheetah running: ``-v_x + action_cost |a|^2 + flip_cost [|pitch'| > pi/2]``
    with ``v_x = (x' - x) / dt`` over the control step (``qpos = [x, z, pitch, ...]``)."""
    del qvel
    vx = (qpos[..., 0] - prev_qpos[..., 0]) / dt
    flipped = np.abs(qpos[..., 2]) > np.pi / 2
    return -vx + action_cost * np.sum(action**2, axis=-1) + flip_cost * flipped


def door_cost(
    qpos: np.ndarray,
    qvel: np.ndarray,
    action: np.ndarray,
    *,
    hinge: int,
    velocity_cost: float = 1e-5,
) -> np.ndarray:
    """The unshaped door: ``0.1 (d - 1.57)^2 + velocity_cost |qvel|^2 - 2 [d > 0.2]
    - 8 [d > 1] - 10 [d > 1.35]`` with ``d = qpos[hinge]`` after the step."""
    del action
    d = qpos[..., hinge]
    c = 0.1 * (d - 1.57) ** 2 + velocity_cost * np.sum(qvel**2, axis=-1)
    return c - 2.0 * (d > 0.2) - 8.0 * (d > 1.0) - 10.0 * (d > 1.35)


@dataclasses.dataclass(frozen=True, eq=False)
class NativeTask:
    """A task on native MuJoCo: model, control period, cost, success and reset.

    Attributes:
      name: the apexjax task name it mirrors.
      model: the native ``MjModel`` (the same MJCF as the MJX task).
      frame_skip: physics steps per control step (the action is held).
      episode_length: control steps per episode.
      action_low, action_high: ``[A]`` bounds (the actuators' control ranges).
      cost: ``(qpos', qvel', action, qpos) -> cost`` on the state after a control step
        (``qpos``: before it), vectorised over leading axes.
      success: ``(qpos, qvel) -> bool`` at the final state.
      reset: ``rng -> (qpos, qvel)``, the apexjax task's start distribution.
    """

    name: str
    model: mujoco.MjModel
    frame_skip: int
    episode_length: int
    action_low: np.ndarray
    action_high: np.ndarray
    cost: CostFn
    success: Callable[[np.ndarray, np.ndarray], bool]
    reset: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]

    @property
    def action_dim(self) -> int:
        return int(self.action_low.shape[0])


# defaults of apexjax's task configs (the tests check they agree)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "cartpole_swingup": dict(
        episode_length=200, frame_skip=5, action_cost=0.01, init_noise=0.05, success_deg=20.0
    ),
    "pendulum_swingup": dict(episode_length=100, frame_skip=5, action_cost=0.001, init_noise=0.1),
    "halfcheetah_running": dict(
        episode_length=1000, frame_skip=5, action_cost=0.1, flip_cost=10.0, init_noise=0.1
    ),
    "door": dict(
        episode_length=200,
        frame_skip=5,
        shaped=False,
        handle_cost=0.1,
        velocity_cost=1e-5,
        success_angle=1.35,
        contacts="full",
        door_low=(-0.3, 0.25, 0.252),
        door_high=(-0.2, 0.35, 0.35),
    ),
}
# tasks whose model apexjax edits at load time: their twins take the task's model
_NEEDS_MODEL = ("halfcheetah_running", "door")
_ASSETS = {"cartpole_swingup": "cartpole.xml", "pendulum_swingup": "pendulum.xml"}


def _load_model(name: str) -> mujoco.MjModel:
    path = importlib.resources.files("apexjax") / "envs" / "assets" / _ASSETS[name]
    with importlib.resources.as_file(path) as p:
        return mujoco.MjModel.from_xml_path(str(p))


def native_task(name: str, *, model: mujoco.MjModel | None = None, **overrides: Any) -> NativeTask:
    """The native twin of apexjax's task ``name`` (``cartpole_swingup``, ``pendulum_swingup``).

    Args:
      name: task name.
      model: the ``MjModel`` to use (default: load the MJCF apexjax ships for the task).
      overrides: task config fields (``episode_length``, ``frame_skip``, ``action_cost``,
        ``init_noise``, and ``success_deg`` for cart-pole), as apexjax's task config.
    """
    if name not in _DEFAULTS:
        raise ValueError(f"no NumPy twin for task {name!r}; known: {', '.join(sorted(_DEFAULTS))}")
    unknown = set(overrides) - set(_DEFAULTS[name])
    if unknown:
        raise ValueError(f"task {name!r}: unknown config field(s) {sorted(unknown)}")
    cfg = {**_DEFAULTS[name], **overrides}
    if model is None and name in _NEEDS_MODEL:
        raise ValueError(
            f"task {name!r}: pass model= (the apexjax task's mj_model, edited at load time), "
            "or use native_task_from(task)"
        )
    if name == "door" and cfg["shaped"]:
        raise ValueError("task 'door': the NumPy twin has the unshaped cost only (shaped=False)")
    model = _load_model(name) if model is None else model
    if not model.actuator_ctrllimited.all():
        raise ValueError(f"task {name!r}: every actuator must be ctrllimited")
    low, high = np.asarray(model.actuator_ctrlrange, np.float64).T
    noise = float(cfg.get("init_noise", 0.0))
    action_cost = float(cfg.get("action_cost", 0.0))

    if name == "cartpole_swingup":
        cos_ok = math.cos(math.radians(float(cfg["success_deg"])))

        def cost(q: np.ndarray, v: np.ndarray, a: np.ndarray, q0: np.ndarray) -> np.ndarray:
            return cartpole_cost(q, v, a, action_cost=action_cost)

        def success(q: np.ndarray, v: np.ndarray) -> bool:
            return bool(np.cos(q[1]) > cos_ok)

        def reset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            qpos = np.array([0.0, math.pi]) + rng.uniform(-noise, noise, 2)
            return qpos, rng.uniform(-noise, noise, 2)

    elif name == "pendulum_swingup":
        cos_ok = math.cos(math.radians(15.0))

        def cost(q: np.ndarray, v: np.ndarray, a: np.ndarray, q0: np.ndarray) -> np.ndarray:
            return pendulum_cost(q, v, a, action_cost=action_cost)

        def success(q: np.ndarray, v: np.ndarray) -> bool:
            return bool(-np.cos(q[0]) > cos_ok)

        def reset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            return rng.uniform(-noise, noise, 1), rng.uniform(-noise, noise, 1)

    elif name == "halfcheetah_running":
        dt = float(model.opt.timestep) * int(cfg["frame_skip"])
        flip = float(cfg["flip_cost"])

        def cost(q: np.ndarray, v: np.ndarray, a: np.ndarray, q0: np.ndarray) -> np.ndarray:
            return halfcheetah_cost(q, v, a, q0, dt=dt, action_cost=action_cost, flip_cost=flip)

        def success(q: np.ndarray, v: np.ndarray) -> bool:
            return False

        def reset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            qpos = model.qpos0 + rng.uniform(-noise, noise, model.nq)
            return qpos, noise * rng.standard_normal(model.nv)

    else:  # door, unshaped; the door's position is the model's (one model per episode)
        hinge_joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "door_hinge")
        hinge = int(model.jnt_qposadr[hinge_joint])
        vel_cost, angle = float(cfg["velocity_cost"]), float(cfg["success_angle"])

        def cost(q: np.ndarray, v: np.ndarray, a: np.ndarray, q0: np.ndarray) -> np.ndarray:
            return door_cost(q, v, a, hinge=hinge, velocity_cost=vel_cost)

        def success(q: np.ndarray, v: np.ndarray) -> bool:
            return bool(q[hinge] >= angle)

        def reset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            return np.zeros(model.nq), np.zeros(model.nv)

    return NativeTask(
        name=name,
        model=model,
        frame_skip=int(cfg["frame_skip"]),
        episode_length=int(cfg["episode_length"]),
        action_low=low,
        action_high=high,
        cost=cost,
        success=success,
        reset=reset,
    )


# Config fields a twin has no use for: how apexjax runs the physics, and what the policy
# observes (a planner reads costs, never observations)
_IGNORED_FIELDS = ("backend", "native_threads", "observe_action")


def native_task_from(task: Any) -> NativeTask:
    """The native twin of an apexjax MuJoCo task instance: its ``mj_model`` and config."""
    config = task.config
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))
    for name in _IGNORED_FIELDS:
        fields.pop(name, None)
    return native_task(task.name, model=task.mj_model, **fields)


# --------------------------------------------------------------------------- planner
class NumpyICEM:
    """iCEM over native MuJoCo: one :meth:`plan` call is one control step.

    Rollouts run on a persistent ``mujoco.rollout.Rollout`` pool of ``nthread`` threads
    (0: on the calling thread). Close the pool with :meth:`close` or use a ``with`` block.
    """

    def __init__(
        self,
        config: ICEMOptions,
        task: NativeTask,
        *,
        nthread: int | None = None,
        seed: int = 0,
    ) -> None:
        """Args:
        config: planner options (an ``ICEMConfig`` or any object with its fields).
        task: the native task (model, cost).
        nthread: rollout threads (default: the cores this process may use).
        seed: seed of the sampling noise.
        """
        if config.num_extra_candidates:
            raise ValueError("NumpyICEM plans without extra candidates (num_extra_candidates=0)")
        if config.execute not in ("best", "mean"):
            raise ValueError(f"execute: {config.execute!r}, allowed 'best', 'mean'")
        if config.cost_aggregation not in ("sum", "min", "final"):
            raise ValueError(f"cost_aggregation: {config.cost_aggregation!r}")
        if nthread is None:
            nthread = _usable_cores()
        self.config = config
        self.task = task
        #: the model rollouts run on: the task's, or an episode's own (run_episode)
        self.model = task.model
        self.nthread = int(nthread)
        self.rng = np.random.default_rng(seed)
        self._pool: mujoco.rollout.Rollout | None = mujoco.rollout.Rollout(nthread=self.nthread)
        self._datas = [mujoco.MjData(task.model) for _ in range(max(1, self.nthread))]
        m = task.model
        self._nq = m.nq
        self._nv = m.nv
        self._qpos_at = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME)
        self._qvel_at = self._qpos_at + self._nq
        self.low = np.asarray(task.action_low, np.float64)
        self.high = np.asarray(task.action_high, np.float64)
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stops the rollout thread pool."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> NumpyICEM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """New episode: mean at the bounds' midpoint, std reset, elite memory empty."""
        h, a_dim = self.config.horizon, self.low.shape[0]
        self.mean = np.tile((self.low + self.high) / 2.0, (h, 1))
        self.std = self._init_std()
        k = num_keep(self.config)
        self.memory_actions = np.zeros((k, h, a_dim))
        self.memory_costs = np.full(k, np.inf)

    def _init_std(self) -> np.ndarray:
        half_range = (self.high - self.low) / 2.0
        return np.tile(self.config.init_std * half_range, (self.config.horizon, 1))

    # ------------------------------------------------------------------ simulation
    def simulate(self, state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rolls ``actions`` ``[P, h, A]`` out from the full physics ``state``.

        Each action is held for ``frame_skip`` physics steps; the cost of control step t
        is the task cost of the state at its end, the action, and the qpos before it.

        Returns:
          costs ``[P, h]`` and ``finite`` ``[P]`` (every state and cost finite).
        """
        fs = self.task.frame_skip
        controls = np.ascontiguousarray(np.repeat(actions, fs, axis=1), np.float64)
        states, _ = self._pool.rollout(
            self.model, self._datas, state[None, :], controls
        )  # [P, h * fs, nstate]
        ends = states[:, fs - 1 :: fs]  # [P, h, nstate]: after each control step
        qpos = ends[..., self._qpos_at : self._qpos_at + self._nq]
        qvel = ends[..., self._qvel_at : self._qvel_at + self._nv]
        q_start = np.broadcast_to(
            state[self._qpos_at : self._qpos_at + self._nq], qpos[:, :1].shape
        )
        prev = np.concatenate([q_start, qpos[:, :-1]], axis=1)
        costs = np.asarray(self.task.cost(qpos, qvel, actions, prev), np.float64)
        finite = (
            np.isfinite(qpos).all(axis=(1, 2))
            & np.isfinite(qvel).all(axis=(1, 2))
            & np.isfinite(costs).all(axis=1)
        )
        return costs, finite

    def _aggregate(self, costs: np.ndarray) -> np.ndarray:
        how = self.config.cost_aggregation
        if how == "sum":
            return costs.sum(axis=1)
        if how == "min":
            return costs.min(axis=1)
        return costs[:, -1]

    # ------------------------------------------------------------------ planning
    def plan(self, state: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """One control step of iCEM from the full physics ``state`` (``mj_getState``).

        Returns:
          the action ``[A]`` (within bounds) and diagnostics: ``best_cost`` (of the best
          sequence seen), ``best_actions`` ``[h, A]``, ``num_simulated_steps``.
        """
        cfg = self.config
        low, high = self.low, self.high
        h, a_dim = cfg.horizon, low.shape[0]
        n_keep = num_keep(cfg)
        alpha = cfg.momentum
        mean, std = self.mean, self.std
        best_cost = math.inf
        best_actions = np.clip(mean, low, high)
        kept_actions = np.zeros((0, h, a_dim))
        kept_costs = np.zeros(0)
        simulated = 0
        for i, n in enumerate(population_sizes(cfg)):
            n_shift = n_keep if (i == 0 and cfg.shift_elites) else 0
            if getattr(cfg, "sampling", "clip") == "truncated":
                noise = _truncated_normal(self.rng, mean, std, low, high, n + n_shift)
            else:
                norm = getattr(cfg, "noise_normalization", "exact")
                noise = colored_noise(
                    self.rng, cfg.beta, (n + n_shift, h, a_dim), normalization=norm
                )
            samples = np.clip(mean + std * noise, low, high)
            population = samples[:n]
            if i == cfg.iterations - 1 and cfg.use_mean_actions:
                population[-1] = np.clip(mean, low, high)
            if n_shift:
                # the previous step's best elites, one step later; each gets the last
                # action of a fresh sample. Slots without an elite keep the fresh sample.
                fresh = samples[n:]
                shifted = np.concatenate([self.memory_actions[:, 1:], fresh[:, -1:]], axis=1)
                have = np.isfinite(self.memory_costs)
                population = np.concatenate(
                    [population, np.where(have[:, None, None], shifted, fresh)]
                )
            costs, finite = self.simulate(state, population)
            simulated += population.shape[0] * h
            totals = self._aggregate(costs)
            totals = np.where(finite & np.isfinite(totals), totals, np.inf)
            if i > 0 and cfg.keep_elites and n_keep:
                population = np.concatenate([population, kept_actions])
                totals = np.concatenate([totals, kept_costs])
            order = np.argsort(totals, kind="stable")
            elite_idx = order[: cfg.elites]
            elites, elite_costs = population[elite_idx], totals[elite_idx]
            ok = np.isfinite(elite_costs)
            if ok.any():  # refit to the finite elites; keep the old stats otherwise
                e_mean = elites[ok].mean(axis=0)
                e_std = elites[ok].std(axis=0)
                mean = (1.0 - alpha) * e_mean + alpha * mean
                std = (1.0 - alpha) * e_std + alpha * std
            if elite_costs[0] < best_cost:
                best_cost = float(elite_costs[0])
                best_actions = elites[0].copy()
            kept_actions = population[order[:n_keep]]
            kept_costs = totals[order[:n_keep]]

        if cfg.execute == "best" and math.isfinite(best_cost):
            action = best_actions[0]
        else:
            action = mean[0]
        action = np.clip(action, low, high)
        # next step: mean shifted one step (last row repeated), std reset, elites remembered
        self.mean = np.concatenate([mean[1:], mean[-1:]], axis=0)
        self.std = self._init_std()
        self.memory_actions = kept_actions
        self.memory_costs = kept_costs
        info = dict(best_cost=best_cost, best_actions=best_actions, num_simulated_steps=simulated)
        return action, info


def _truncated_normal(
    rng: np.random.Generator,
    mean: np.ndarray,
    std: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    n: int,
) -> np.ndarray:
    """``[n, h, A]`` standard normal draws truncated so that ``mean + std * x`` lies in the
    bounds (rejection: out-of-bounds draws are drawn again)."""
    safe = np.maximum(std, 1e-8)
    lo, hi = (low - mean) / safe, (high - mean) / safe
    x = rng.standard_normal((n, *mean.shape))
    bad = (x < lo) | (x > hi)
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = (x < lo) | (x > hi)
    return x


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- MPC
@dataclasses.dataclass(frozen=True)
class EpisodeResult:
    """One closed-loop episode of the NumPy planner on native MuJoCo.

    Attributes:
      episode_return: minus the sum of the executed steps' task costs.
      success: the task's success test at the final state.
      seconds_per_step: wall time per control step (planning plus the env step).
      simulated_steps_per_s: control steps simulated by the planner per second of wall time.
      costs: ``[T]`` executed task costs; actions ``[T, A]``; predicted_costs ``[T]``.
    """

    episode_return: float
    success: bool
    seconds_per_step: float
    simulated_steps_per_s: float
    costs: np.ndarray
    actions: np.ndarray
    predicted_costs: np.ndarray


def run_episode(
    planner: NumpyICEM,
    qpos: np.ndarray,
    qvel: np.ndarray,
    num_steps: int | None = None,
    model: mujoco.MjModel | None = None,
) -> EpisodeResult:
    """Runs the planner closed-loop for one episode from ``qpos``/``qvel`` on native MuJoCo.

    Each control step: read the environment's full physics state, plan from it, hold
    the action for ``frame_skip`` ``mj_step`` calls, and score the step with the task cost.
    ``model``: the episode's own model (e.g. the door at its drawn position), for the
    environment and the planner's rollouts alike; default the task's.
    """
    task = planner.task
    m = task.model if model is None else model
    planner.model = m
    T = int(task.episode_length if num_steps is None else num_steps)
    d = mujoco.MjData(m)
    d.qpos[:] = qpos
    d.qvel[:] = qvel
    mujoco.mj_forward(m, d)
    state = np.empty(mujoco.mj_stateSize(m, _FULL))
    planner.reset()
    costs = np.empty(T)
    actions = np.empty((T, task.action_dim))
    predicted = np.empty(T)
    simulated = 0
    t0 = time.perf_counter()
    for t in range(T):
        mujoco.mj_getState(m, d, state, _FULL)
        action, info = planner.plan(state)
        before = d.qpos.copy()
        d.ctrl[:] = action
        for _ in range(task.frame_skip):
            mujoco.mj_step(m, d)
        costs[t] = float(task.cost(d.qpos, d.qvel, action, before))
        actions[t] = action
        predicted[t] = info["best_cost"]
        simulated += info["num_simulated_steps"]
    seconds = time.perf_counter() - t0
    return EpisodeResult(
        episode_return=-float(costs.sum()),
        success=task.success(d.qpos.copy(), d.qvel.copy()),
        seconds_per_step=seconds / T,
        simulated_steps_per_s=simulated / seconds,
        costs=costs,
        actions=actions,
        predicted_costs=predicted,
    )


def run_mpc(
    config: ICEMOptions,
    task: NativeTask,
    initial_states: list[tuple[np.ndarray, ...]] | int,
    *,
    num_steps: int | None = None,
    nthread: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Closed-loop episodes one after another, one planner (and thread pool) for all.

    Args:
      config: planner options.
      task: the native task.
      initial_states: ``[(qpos, qvel), ...]`` start states, optionally with the episode's
        own model as a third item (``(qpos, qvel, model)``), or a number of episodes whose
        start states are drawn from ``task.reset``.
      num_steps: control steps per episode (default ``task.episode_length``).
      nthread: rollout threads (default: usable cores).
      seed: seed of the start states (if drawn) and of the planner's noise.

    Returns:
      dict: ``returns [E]``, ``success [E]``, ``seconds_per_step`` (mean over episodes),
      ``simulated_steps_per_s`` (all episodes), ``run_s``, ``costs [E, T]``,
      ``actions [E, T, A]``, ``simulated_steps_per_control_step``, ``nthread``.
    """
    rng = np.random.default_rng(seed)
    if isinstance(initial_states, int):
        initial_states = [task.reset(rng) for _ in range(initial_states)]
    results = []
    with NumpyICEM(config, task, nthread=nthread, seed=seed + 1) as planner:
        for e, (qpos, qvel, *model) in enumerate(initial_states):
            m = model[0] if model else None
            r = run_episode(planner, np.asarray(qpos), np.asarray(qvel), num_steps, m)
            _log.info(
                "NumPy iCEM %s episode %d: return %.2f, %.1f ms per control step",
                task.name,
                e,
                r.episode_return,
                r.seconds_per_step * 1e3,
            )
            results.append(r)
        nthread_used = planner.nthread
    T = results[0].costs.shape[0]
    run_s = sum(r.seconds_per_step * T for r in results)
    per_step = simulated_per_step(config)
    return dict(
        returns=np.array([r.episode_return for r in results]),
        success=np.array([r.success for r in results]),
        seconds_per_step=run_s / (T * len(results)),
        simulated_steps_per_s=per_step * T * len(results) / run_s,
        run_s=run_s,
        costs=np.stack([r.costs for r in results]),
        actions=np.stack([r.actions for r in results]),
        predicted_costs=np.stack([r.predicted_costs for r in results]),
        simulated_steps_per_control_step=per_step,
        num_episodes=len(results),
        num_steps=T,
        nthread=nthread_used,
    )


def time_raw_rollouts(
    config: ICEMOptions,
    task: NativeTask,
    qpos: np.ndarray,
    qvel: np.ndarray,
    *,
    nthread: int | None = None,
    repeats: int = 3,
    seed: int = 0,
    num_envs: int = 1,
) -> dict[str, Any]:
    """Raw batched native physics at the planner's batch, without any planner logic.

    Random action sequences with each iteration's row count (the first including the
    shifted elites) times ``num_envs`` (episodes planned at once) and the planner's
    horizon are rolled out from ``qpos``/``qvel`` with the same thread pool set-up as
    :class:`NumpyICEM`, one iteration's batch after another, ``repeats`` times.

    Returns:
      dict: ``run_s`` (median seconds per planning step's worth of physics), ``runs_s``,
      ``steps_per_call`` (control steps), ``steps_per_s``.
    """
    rng = np.random.default_rng(seed)
    rows = population_sizes(config)
    if config.shift_elites:
        rows[0] += num_keep(config)
    h, fs = config.horizon, task.frame_skip
    m = task.model
    d = mujoco.MjData(m)
    d.qpos[:] = qpos
    d.qvel[:] = qvel
    mujoco.mj_forward(m, d)
    state = np.empty(mujoco.mj_stateSize(m, _FULL))
    mujoco.mj_getState(m, d, state, _FULL)
    controls = [
        np.repeat(
            rng.uniform(task.action_low, task.action_high, (num_envs * n, h, task.action_dim)),
            fs,
            1,
        )
        for n in rows
    ]
    nthread = _usable_cores() if nthread is None else int(nthread)
    datas = [mujoco.MjData(m) for _ in range(max(1, nthread))]
    runs = []
    with mujoco.rollout.Rollout(nthread=nthread) as pool:
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            for c in controls:
                pool.rollout(m, datas, state[None, :], c)
            if r:  # the first call warms the pool up
                runs.append(time.perf_counter() - t0)
    run_s = float(np.median(runs))
    steps = num_envs * sum(rows) * h
    return dict(run_s=run_s, runs_s=runs, steps_per_call=steps, steps_per_s=steps / run_s)

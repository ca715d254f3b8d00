"""Planner against the original design: apexjax's iCEM vs a NumPy iCEM on native MuJoCo.

One :func:`run` measures, in the same process and with the same iCEM options, task and
start states:

  apexjax  closed-loop MPC with :func:`apexjax.planning.icem.plan` on the task's physics
           backend (native MuJoCo on CPU by default, or MJX), the episodes vmapped and,
           with ``devices`` > 1, split over that many JAX devices (compilation timed
           apart);
  NumPy    the reference iCEM of :mod:`apexjax.reference.numpy_icem` on native MuJoCo, its
           populations rolled out by ``mujoco.rollout`` threads, episodes one after another;
  raw      batched physics alone at each planner's batch (each iteration's population x
           the horizon, iterations one after another): ``mujoco.rollout`` with MuJoCo's
           threads at the NumPy planner's batch and at apexjax's (all episodes at once);
           on MJX also MJX's own vmap x scan. Each planner's overhead over raw physics is
           in the same report.

Figures: time per control step (per episode), simulated control steps per second, the
mean episode return of each planner (they must agree within noise: the NumPy planner is an
independent check of the JAX one), and the planner-vs-raw-physics throughput fractions.

Host devices on CPU must be requested before JAX starts; :func:`run_in_subprocess` (what
``apexjax bench`` uses) runs ``python -m apexjax.bench.planner --devices N`` with
``XLA_FLAGS`` set and parses the section from its JSON output.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from apexjax import envs
from apexjax.bench import Figure, Section, section_from_dict, section_to_dict
from apexjax.configs import parse_overrides, to_dict
from apexjax.envs.base import State, Task
from apexjax.planning import icem
from apexjax.planning.mpc import make_mpc_step
from apexjax.reference import numpy_icem
from apexjax.sharding import make_mesh, shard_batch, split_over_devices

__all__ = [
    "chained",
    "default_config",
    "iteration_batches",
    "raw_final_qpos",
    "run",
    "run_in_subprocess",
]

_log = logging.getLogger(__name__)

#: quick mode: a small budget (use it with pendulum_swingup for a test). Two iterations
#: still exercise every iCEM option (elites kept across iterations, the mean at the last
#: one, shifted elites) and compile markedly faster than three.
QUICK = dict(
    planner=dict(population=16, elites=4, horizon=15, iterations=2),
    episodes=2,
    steps=30,
    repeats=2,
)
#: episodes run by default (rounded up to a multiple of the device count).
EPISODES = 4
_DEVICE_FLAG = "--xla_force_host_platform_device_count"


# --------------------------------------------------------------------------- raw physics
def iteration_batches(
    task: Task, config: icem.ICEMConfig, seed: int, num_envs: int = 1
) -> tuple[list[int], list[jax.Array]]:
    """Random action batches with the planner's shapes, one per iteration.

    Returns ``(rows, actions)``: ``rows[i]`` sequences at iteration i (the first
    including the shifted elites, simulated with it), ``actions[i]`` of shape
    ``[num_envs, rows[i], h, A]``, uniform within the action bounds.
    """
    lo, hi = task.action_bounds
    rows = list(icem.population_sizes(config))
    if config.shift_elites:
        rows[0] += icem.num_keep(config)
    h, a_dim = config.horizon, task.action_dim
    acts = [
        jax.random.uniform(jax.random.key(seed + i), (num_envs, n, h, a_dim), minval=lo, maxval=hi)
        for i, n in enumerate(rows)
    ]
    return rows, acts


def raw_final_qpos(task: Task, state: State, actions: jax.Array) -> jax.Array:
    """The task's dynamics alone over ``actions`` ``[h, A]``; only the final qpos is kept."""
    return jax.lax.scan(lambda s, x: (task.step(s, x), None), state, actions)[0].data.qpos


def chained(
    batch_fn: Callable[[Any, jax.Array], jax.Array], mesh: Any = None
) -> Callable[[Any, list[jax.Array]], list[jax.Array]]:
    """Jitted ``f(state, [x_0, x_1, ...])`` running ``batch_fn(state, x_i)`` one after another.

    Each batch depends (by a zero) on the previous one's result, as the planner's
    iterations do: independent batches would let XLA overlap them, which no planner can.
    With a ``mesh`` (see :func:`apexjax.sharding.make_mesh`), the leading axis of the
    state and of every batch is split over its devices.
    """

    def f(s: Any, xs: list[jax.Array]) -> list[jax.Array]:
        outs, dep = [], 0.0
        for x in xs:
            y = batch_fn(s, x + dep)
            dep = 0.0 * jnp.sum(y)
            outs.append(y)
        return outs

    return jax.jit(split_over_devices(f, mesh, (True, True)))


def _raw_physics(
    task: Task, config: icem.ICEMConfig, states: State, mesh: Any, seed: int, repeats: int
) -> dict[str, Any]:
    num_envs = int(states.t.shape[0])
    rows, acts = iteration_batches(task, config, seed, num_envs)

    def per_env(s: State, x: jax.Array) -> jax.Array:
        return jax.vmap(lambda a: raw_final_qpos(task, s, a))(x)

    fn = chained(jax.vmap(per_env), mesh)
    states, acts = shard_batch((states, acts), mesh)
    t0 = time.perf_counter()
    compiled = fn.lower(states, acts).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(states, acts))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(states, acts))
        runs.append(time.perf_counter() - t0)
    run_s = float(np.median(runs))
    steps = num_envs * sum(rows) * config.horizon
    return dict(
        compile_s=compile_s,
        run_s=run_s,
        runs_s=runs,
        steps_per_call=steps,
        steps_per_s=steps / run_s,
    )


# --------------------------------------------------------------------------- apexjax MPC
def _jax_mpc(
    config: icem.ICEMConfig,
    task: Task,
    states: State,
    keys: jax.Array,
    num_steps: int,
    mesh: Any,
) -> dict[str, Any]:
    """Closed-loop episodes from ``states`` (leading axis E), split over ``mesh``."""
    num_episodes = int(states.t.shape[0])
    ps0 = icem.init(config, task.action_bounds)
    planners = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_episodes, *x.shape)), ps0)
    step = make_mpc_step(config, task)

    def episodes(carry: Any) -> Any:
        return jax.vmap(lambda c: jax.lax.scan(step, c, None, length=num_steps))(carry)

    fn = jax.jit(split_over_devices(episodes, mesh, (True,)))
    carry = shard_batch((states, planners, keys), mesh)
    t0 = time.perf_counter()
    compiled = fn.lower(carry).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    carry, out = compiled(carry)
    jax.block_until_ready((carry, out))
    run_s = time.perf_counter() - t0
    costs = np.asarray(out["cost"], np.float64)
    return dict(
        returns=-costs.sum(axis=1),
        success=np.asarray(jax.vmap(task.success)(carry[0])),
        costs=costs,
        nonfinite_steps=np.asarray(out["all_nonfinite"]).sum(axis=1),
        compile_s=compile_s,
        run_s=run_s,
    )


# --------------------------------------------------------------------------- section
def default_config(task: str) -> icem.ICEMConfig:
    """The budget ``apexjax plan`` uses for ``task``: default iCEM with the task's beta."""
    from apexjax.envs import planner_beta

    return icem.ICEMConfig(beta=planner_beta(task))


def _agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float | bool]:
    """Difference of mean returns against its standard error (Welch); ``agree`` when
    within 3 standard errors or, where both are nearly deterministic, within 2 %."""
    diff = float(a.mean() - b.mean())
    se = (
        math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        if min(a.size, b.size) > 1
        else 0.0
    )
    scale = max(abs(float(a.mean())), abs(float(b.mean())), 1e-9)
    agree = abs(diff) <= 3.0 * se or abs(diff) <= 0.02 * scale
    return dict(
        difference=diff,
        standard_error=se,
        z=diff / se if se > 0 else (math.copysign(math.inf, diff) if diff else 0.0),
        relative_difference=abs(diff) / scale,
        agree=bool(agree),
    )


def run(
    task: str,
    *,
    quick: bool = False,
    seed: int = 0,
    devices: int = 1,
    episodes: int | None = None,
    num_steps: int | None = None,
    planner_set: Sequence[str] = (),
    nthread: int | None = None,
    repeats: int = 3,
    backend: str = "auto",
) -> Section:
    """apexjax's iCEM MPC against the NumPy iCEM on native MuJoCo, plus raw physics.

    Args:
      task: a task with a NumPy twin: ``cartpole_swingup``, ``pendulum_swingup``,
        ``halfcheetah_running``, ``door`` (unshaped).
      quick: a small budget (population 16, 2 iterations, horizon 15, 2 episodes of 30
        steps); with ``pendulum_swingup`` (the cheapest to compile) it suits a test.
      seed: start states and planner noise.
      devices: JAX devices the MJX episodes are split over; on CPU they must exist before
        JAX starts (use :func:`run_in_subprocess`).
      episodes: E, episodes per planner (default 4; rounded up to a multiple of
        ``devices``).
      num_steps: control steps per episode (default: the task's episode length).
      planner_set: ``FIELD=VALUE`` overrides of the ``ICEMConfig`` (default: the budget
        of ``apexjax plan`` for the task).
      nthread: rollout threads of the NumPy planner (default: usable cores).
      repeats: timed calls of the raw physics (the median is reported).
      backend: apexjax's physics, ``"auto"`` (native on CPU), ``"native"`` or ``"mjx"``.

    Raises:
      ValueError: fewer than ``devices`` JAX devices, or a task without a NumPy twin.
    """
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    available = len(jax.devices())
    if available < devices:
        hint = ""
        if jax.devices()[0].platform == "cpu":
            hint = f"; on CPU set XLA_FLAGS={_DEVICE_FLAG}={devices} before JAX starts (see run_in_subprocess)"
        raise ValueError(f"devices={devices} asked for, {available} JAX device(s) available{hint}")
    jtask = envs.make(task, backend=backend)
    ntask = numpy_icem.native_task_from(jtask)  # ValueError for tasks without a NumPy twin
    base = default_config(task)
    if quick:
        base = dataclasses.replace(base, **QUICK["planner"])
        repeats = min(repeats, QUICK["repeats"])
    config = parse_overrides(icem.ICEMConfig, planner_set, base=base)
    E = episodes if episodes is not None else (QUICK["episodes"] if quick else EPISODES)
    E = devices * max(1, math.ceil(E / devices))
    T = int(
        num_steps if num_steps is not None else (QUICK["steps"] if quick else jtask.episode_length)
    )
    mesh = make_mesh(devices) if devices > 1 else None
    per_step = icem.simulated_per_step(config)
    if per_step != numpy_icem.simulated_per_step(config):  # two independent budget counts
        raise RuntimeError("the NumPy and apexjax planners disagree on the simulation budget")

    load_before = _load_average()
    # identical start states for both planners, from the apexjax task's reset
    k_reset, k_plan = jax.random.split(jax.random.key(seed))
    states = jax.jit(jax.vmap(jtask.reset))(jax.random.split(k_reset, E))
    qpos0 = np.asarray(states.data.qpos, np.float64)
    qvel0 = np.asarray(states.data.qvel, np.float64)
    starts = [
        (q, v, *_episode_model(jtask, ntask, states, e))
        for e, (q, v) in enumerate(zip(qpos0, qvel0, strict=True))
    ]
    kind = jtask.backend

    _log.info(
        "planner bench %s: %s MPC, %d episode(s) x %d steps on %d device(s)",
        task,
        kind,
        E,
        T,
        devices,
    )
    mjx_r = _jax_mpc(config, jtask, states, jax.random.split(k_plan, E), T, mesh)
    _log.info("planner bench %s: NumPy iCEM on native MuJoCo", task)
    np_r = numpy_icem.run_mpc(config, ntask, starts, num_steps=T, nthread=nthread, seed=seed)
    raw_np = numpy_icem.time_raw_rollouts(
        config, ntask, qpos0[0], qvel0[0], nthread=np_r["nthread"], repeats=repeats, seed=seed
    )
    _log.info("planner bench %s: raw physics at apexjax's batch", task)
    raw_native = numpy_icem.time_raw_rollouts(
        config,
        ntask,
        qpos0[0],
        qvel0[0],
        nthread=np_r["nthread"],
        repeats=repeats,
        seed=seed,
        num_envs=E,
    )
    raw = _raw_physics(jtask, config, states, mesh, seed, repeats) if kind == "mjx" else raw_native

    mjx_step_s = mjx_r["run_s"] / (T * E)
    np_step_s = np_r["run_s"] / (T * E)
    mjx_rate = per_step / mjx_step_s
    np_rate = per_step / np_step_s
    agree = _agreement(mjx_r["returns"], np_r["returns"])
    dev_word = f"{devices} {jax.devices()[0].platform} device{'s' if devices > 1 else ''}"
    base_name = f"NumPy iCEM, native MuJoCo, {np_r['nthread']} rollout thread(s)"
    batch = f"batch {per_step} control steps (population x horizon, {config.iterations} iterations)"
    figures = [
        Figure(
            "time per control step",
            mjx_step_s * 1e3,
            "ms",
            np_step_s * 1e3,
            base_name,
            np_step_s / mjx_step_s,
            f"per episode; {E} episodes x {T} steps; apexjax vmaps them over {dev_word}, "
            "NumPy runs them one after another",
        ),
        Figure(
            "simulated steps/s in MPC",
            mjx_rate,
            "control steps/s",
            np_rate,
            base_name,
            mjx_rate / np_rate,
            f"{per_step} simulated control steps per control step "
            f"({jtask.frame_skip} physics steps each)",
        ),
        Figure(
            "episode return",
            float(mjx_r["returns"].mean()),
            "return",
            float(np_r["returns"].mean()),
            base_name,
            None,
            f"mean of {E}, same start states; std {mjx_r['returns'].std(ddof=1) if E > 1 else 0.0:.2f} "
            f"vs {np_r['returns'].std(ddof=1) if E > 1 else 0.0:.2f}; difference "
            f"{agree['difference']:.2f} = {agree['z']:.1f} standard errors: "
            f"{'agree' if agree['agree'] else 'DISAGREE'} within noise",
        ),
        Figure(
            "success rate",
            float(np.mean(mjx_r["success"])),
            "fraction",
            float(np.mean(np_r["success"])),
            base_name,
            None,
            "at the final step",
        ),
        Figure(
            "raw batched physics",
            raw["steps_per_s"],
            "control steps/s",
            raw_np["steps_per_s"],
            f"mujoco.rollout, {np_r['nthread']} thread(s), the NumPy planner's batch",
            raw["steps_per_s"] / raw_np["steps_per_s"],
            (f"MJX vmap x scan on {dev_word}" if kind == "mjx" else "mujoco.rollout")
            + f", {E} envs x {batch}",
        ),
        Figure(
            "planner throughput / raw physics",
            mjx_rate / raw["steps_per_s"],
            "fraction",
            np_rate / raw_np["steps_per_s"],
            "NumPy iCEM / mujoco.rollout",
            None,
            "1.0 = no planner overhead over the simulator at the same batch (apexjax: raw "
            + ("MJX" if kind == "mjx" else "native mujoco.rollout")
            + f" at {E} envs x the population)",
        ),
        Figure(
            "MPC compile time",
            mjx_r["compile_s"],
            "s",
            note=f"one jit of the whole episode ({T} steps, {E} episodes)"
            + (f"; raw MJX physics compile {raw['compile_s']:.1f} s" if kind == "mjx" else ""),
        ),
    ]
    details = dict(
        task=task,
        backend=kind,
        quick=quick,
        seed=seed,
        devices=devices,
        jax_devices=[str(d) for d in jax.devices()[:devices]],
        episodes=E,
        num_steps=T,
        config=to_dict(config),
        task_config=to_dict(jtask.config),
        simulated_steps_per_control_step=per_step,
        start_qpos=qpos0.tolist(),
        start_qvel=qvel0.tolist(),
        apexjax=dict(
            returns=mjx_r["returns"].tolist(),
            success=mjx_r["success"].tolist(),
            nonfinite_steps=mjx_r["nonfinite_steps"].tolist(),
            compile_s=mjx_r["compile_s"],
            run_s=mjx_r["run_s"],
            wall_per_control_step_s=mjx_r["run_s"] / T,
            seconds_per_step_per_episode=mjx_step_s,
            simulated_steps_per_s=mjx_rate,
        ),
        numpy=dict(
            returns=np_r["returns"].tolist(),
            success=np_r["success"].tolist(),
            run_s=np_r["run_s"],
            seconds_per_step=np_step_s,
            simulated_steps_per_s=np_rate,
            nthread=np_r["nthread"],
        ),
        raw_apexjax_batch=raw,
        raw_native_numpy_batch=raw_np,
        raw_native_apexjax_batch=raw_native,
        agreement=agree,
        load_average=dict(before=load_before, after=_load_average()),
    )
    title = f"Planner ({kind} physics) vs a NumPy iCEM on native MuJoCo: {task}, {dev_word}"
    return Section(title, figures, details)


def _episode_model(jtask: Task, ntask: Any, states: State, e: int) -> list[Any]:
    """``[model]`` of episode e for the NumPy planner where the task keeps model fields per
    episode (the door's position), else ``[]`` (the twin's own model)."""
    names = getattr(jtask, "model_field_names", ())
    if not names:
        return []
    info = jax.tree.map(lambda x: x[e], states.info)
    m = copy.copy(ntask.model)
    for name, value in jtask.model_fields(info).items():
        base = getattr(m, name)
        v = np.asarray(value, np.float32)
        changed = v != base.astype(np.float32)  # the drawn values; the rest stays exact
        base[changed] = v[changed]
    return [m]


def _load_average() -> list[float] | None:
    """The host's 1/5/15-minute load averages (timings on a shared machine need them)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# --------------------------------------------------------------------------- JSON / subprocess
def _with_device_count(flags: str, devices: int) -> str:
    flags = re.sub(rf"{_DEVICE_FLAG}=\S+", "", flags)
    return f"{flags} {_DEVICE_FLAG}={devices}".strip()


def run_in_subprocess(
    task: str,
    devices: int,
    *,
    quick: bool = False,
    seed: int = 0,
    episodes: int | None = None,
    num_steps: int | None = None,
    planner_set: Sequence[str] = (),
    nthread: int | None = None,
    repeats: int = 3,
    timeout: float | None = None,
    backend: str = "auto",
) -> Section:
    """:func:`run` in a fresh Python with ``devices`` XLA host devices (``XLA_FLAGS`` set).

    Arguments as :func:`run`; ``timeout`` in seconds for the child. Raises RuntimeError
    (with the end of the child's error output) if it fails.
    """
    cmd = [sys.executable, "-m", "apexjax.bench.planner", "--task", task]
    cmd += ["--devices", str(devices), "--seed", str(seed), "--repeats", str(repeats)]
    cmd += ["--backend", backend]
    if quick:
        cmd.append("--quick")
    if episodes is not None:
        cmd += ["--episodes", str(episodes)]
    if num_steps is not None:
        cmd += ["--steps", str(num_steps)]
    if nthread is not None:
        cmd += ["--nthread", str(nthread)]
    for item in planner_set:
        cmd += ["--set", item]
    env = dict(os.environ)
    env["XLA_FLAGS"] = _with_device_count(env.get("XLA_FLAGS", ""), devices)
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"planner bench with {devices} device(s) failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-3000:]}"
        )
    return section_from_dict(json.loads(proc.stdout))


def main(argv: list[str] | None = None) -> int:
    """``python -m apexjax.bench.planner``: runs :func:`run`, writes the section as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--nthread", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--backend", default="auto", choices=("auto", "mjx", "native"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    section = run(
        args.task,
        quick=args.quick,
        seed=args.seed,
        devices=args.devices,
        episodes=args.episodes,
        num_steps=args.steps,
        planner_set=args.set,
        nthread=args.nthread,
        repeats=args.repeats,
        backend=args.backend,
    )
    sys.stdout.write(json.dumps(section_to_dict(section), default=_jsonable) + "\n")
    return 0


def _jsonable(x: Any) -> Any:
    return x.tolist() if hasattr(x, "tolist") else str(x)


if __name__ == "__main__":
    sys.exit(main())

"""The native backend's numbers: planner efficiency against raw MuJoCo, where the rest of a
plan goes, and cold compiles.

Three sections, every shipped MuJoCo task, native backend, measured side by side in one run:

``efficiency``
    One jitted iCEM control step (:func:`apexjax.planning.icem.plan`, the ``paper`` budget:
    N = 40, I = 3, K = 10, h = 30, the task's beta) for E environments at once (vmap), against
    raw MuJoCo replaying exactly the physics that plan asked for: one plan call runs with
    ``NativeSim.trace`` on, which logs every C call (its start rows, model fields such as the
    door's position, controls, substeps), and the replays run those calls again without
    JAX, the host callback or the backend's recording, on MuJoCo's own threads:
    ``mujoco.rollout`` (one C call per logged call, controls held for frame_skip substeps)
    and ``mujoco.batch`` stepped one control step at a time, computing the forward stages a
    logged step computed at its new state (the positions Fetch reads every control step).
    Reported: physics steps per second of each (a fused rollout's extra substep, which the
    backend simulates to read derived fields at the horizon's last state, is not counted),
    the C calls' own share of the plan, and the planner's fraction of the faster raw replay
    that does the same work (1.0 = no overhead; ``raw_baselines`` names them: only the
    stepped one where a step computes stages, which ``mujoco.rollout`` cannot).
``overhead``
    Where a plan's time goes besides MuJoCo: the same jitted plan three ways, timed in turn
    in one process: as it runs; with its host callbacks replaced by ones that return the
    results of one real call of the same shape (no MuJoCo and none of the backend's host
    code: what is left is XLA's work and JAX's callback machinery); and with its host
    callbacks timed and ``NativeSim.trace`` on (the callbacks' wall time, and the C calls'
    own time within it).
``compile``
    Cold compile (JAX's persistent cache off, a fresh process per task) of the program
    ``apexjax plan`` runs (one chunk of closed-loop MPC, the paper budget, 2 episodes) and
    of one APEX training step at the task's ``cpu`` preset.

    python benchmarks/native_backend.py [--tasks a,b] [--envs 1,4] [--repeats 5] [--out ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import batch as mj_batch
from mujoco import rollout as mj_rollout

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import apexjax.envs as envs
from apexjax.envs.native import default_threads
from apexjax.planning import icem
from benchmarks._common import environment_info, write_json

TASKS = (
    "pendulum_swingup",
    "cartpole_swingup",
    "reacher",
    "halfcheetah_running",
    "humanoid_standup",
    "door",
    "fetch_pick_and_place",
)


_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def _planner(name: str) -> icem.ICEMConfig:
    return icem.ICEMConfig(beta=envs.planner_beta(name))


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn ``repeats`` times (after a warm-up)."""
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in runs.items()}


def _replay(task, calls: list, threads: int) -> dict:
    """Raw MuJoCo replays of the C calls one ``plan`` made (``NativeSim.trace``): the same
    start rows, model fields and controls, so the same contacts and solver work, without
    JAX, the host callback or the recording the backend does. Two ways, built before
    timing: ``batch`` (``mujoco.batch``, stepped one control step at a time, as a user
    would) and ``rollout`` (``mujoco.rollout``, one C call per host call of the plan)."""
    m, fs = task.mj_model, task.frame_skip
    full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    spec = mujoco.mjtState.mjSTATE_CTRL
    if m.nmocap:  # Fetch moves its gripper through a mocap target set every control step
        spec |= mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT
    batch_jobs, rollout_jobs = [], []
    # One scratch MjData converts every start row (state functions do not read the
    # per-simulation model fields); a model is copied per simulation only where such
    # fields exist (the door), since one MjData per simulation of a large model (Fetch's
    # contact arena) does not fit in memory at 400 simulations.
    scratch, sims = mujoco.MjData(m), {}
    nfull, nspec = mujoco.mj_stateSize(m, full), mujoco.mj_stateSize(m, spec)
    for c in calls:
        sel = slice(None) if c.ids is None else c.ids  # the simulations that ran
        rows = c.rows[sel]
        values = {k: v[sel] for k, v in c.model_values.items()}
        n = len(rows)
        if n not in sims:  # one batch per size: Fetch makes 90 calls of three sizes
            sims[n] = mj_batch.Batch(m, n, nthread=threads)
        steps = c.nstep // fs  # control steps (a rollout's extra substep is left out)
        models = []
        starts, warm, ctrls = np.empty((n, nfull)), np.empty((n, m.nv)), np.empty((n, nspec))
        for i in range(n):
            if values:
                mi = copy.copy(m)
                for k, v in values.items():
                    getattr(mi, k)[...] = v[i]
                models.append(mi)
            mujoco.mj_setState(m, scratch, rows[i], _SPEC)
            mujoco.mj_getState(m, scratch, starts[i], full)
            mujoco.mj_getState(m, scratch, ctrls[i], spec)
            warm[i] = scratch.qacc_warmstart
        # the control vectors (ctrl first, then any mocap pose) held for every substep
        control = np.repeat(ctrls[:, None], steps * fs, axis=1)
        per_step = None
        if c.kind == "rollout":
            control[:, :, : m.nu] = c.control[:, : steps * fs]
            per_step = control[:, ::fs, : m.nu]
        # a step computes the stages its task's derived fields need at the new state
        # (positions and velocities: Fetch's gripper pose, read every control step): the
        # physics' own work, which any user of raw MuJoCo pays to read them at that state
        stage = c.stage if c.kind == "step" else 0
        batch_jobs.append((sims[n], rows, values, per_step, steps, stage))
        rollout_jobs.append((models or m, starts, warm, control))
    datas = [mujoco.MjData(m) for _ in range(threads)]

    def batch():
        for sim, rows, values, per_step, steps, stage in batch_jobs:
            sim.state[:] = rows
            for k, v in values.items():
                sim.expand(k)[...] = v
            for t in range(steps):
                if per_step is not None:
                    sim.ctrl[:] = per_step[:, t]
                sim.step(nstep=fs, stage=stage)

    pool = mj_rollout.Rollout(nthread=threads)

    def rollout():
        for models, starts, warm, control in rollout_jobs:
            pool.rollout(models, datas, starts, control, control_spec=spec, initial_warmstart=warm)

    return {"batch": batch, "rollout": rollout, "pool": pool}


def _ran(call) -> int:
    return len(call.rows) if call.ids is None else len(call.ids)


def _batched_plan(task, n_envs: int) -> tuple:
    """The task's paper-budget plan for ``n_envs`` environments at once (jitted, vmapped),
    and its arguments: seed-0 keys, fresh planner states, reset states."""
    cfg = _planner(task.name)
    keys = jax.random.split(jax.random.key(0), n_envs)
    states = jax.jit(jax.vmap(task.reset))(keys)
    ps = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (n_envs, *x.shape)), icem.init(cfg, task.action_bounds)
    )
    plan = jax.jit(jax.vmap(lambda k, p, s: icem.plan(cfg, k, p, s, task)[0]))
    return plan, (keys, ps, states)


def efficiency(name: str, n_envs: int, repeats: int) -> dict:
    task = envs.make(name, backend="native")
    cfg = _planner(name)
    plan, (keys, ps, states) = _batched_plan(task, n_envs)
    t0 = time.perf_counter()
    plan = plan.lower(keys, ps, states).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(plan(keys, ps, states))
    # one plan call traced: what it asked of MuJoCo, and the C calls' own time
    task.native.trace = []
    try:
        jax.block_until_ready(plan(keys, ps, states))
        calls = list(task.native.trace)
    finally:
        task.native.trace = None
    threads = default_threads()
    raw = _replay(task, calls, threads)
    try:
        # interleaved, so that a drift in the machine's speed hits all three alike
        fns = {
            "plan": lambda: jax.block_until_ready(plan(keys, ps, states)),
            "rollout": raw["rollout"],
            "batch": raw["batch"],
        }
        times = _interleaved(fns, repeats)
    finally:
        raw["pool"].close()
    plan_s, rollout_s, batch_s = times["plan"], times["rollout"], times["batch"]
    h, fs = cfg.horizon, task.frame_skip
    physics = sum(_ran(c) * (c.nstep // fs) * fs for c in calls)
    # mujoco.rollout cannot compute the stages a step call asks for at its new state, so
    # where the plan makes such calls (Fetch) only the stepped replay does the same work
    staged = any(c.kind == "step" and c.stage for c in calls)
    best_raw = batch_s if staged else min(rollout_s, batch_s)
    c_s = sum(c.seconds for c in calls)
    return {
        "envs": n_envs,
        "batch_per_iteration": sorted({_ran(c) for c in calls}, reverse=True),
        "host_calls_per_plan": len(calls),
        "horizon": h,
        "frame_skip": fs,
        "threads": threads,
        "physics_steps_per_plan": physics,
        "plan_compile_s": compile_s,
        "plan_s": plan_s,
        "plan_physics_steps_per_s": physics / plan_s,
        "mujoco_call_s": c_s,
        "mujoco_share_of_plan": c_s / plan_s,
        "raw_rollout_s": rollout_s,
        "raw_rollout_physics_steps_per_s": physics / rollout_s,
        "raw_batch_s": batch_s,
        "raw_batch_physics_steps_per_s": physics / batch_s,
        "raw_baselines": ["batch"] if staged else ["rollout", "batch"],
        "plan_over_raw": best_raw / plan_s,
    }


def _wrap_callbacks(sim, wrap) -> None:
    """Replaces ``sim``'s host callbacks (``rollout``, ``step``) by ``wrap(real)``; a task's
    jitted functions pick them up when they are first traced."""
    for name in ("rollout", "step"):
        setattr(sim, name, wrap(getattr(sim, name)))


def _no_physics(sim) -> None:
    """Replaces ``sim``'s host callbacks by ones that return, for each input shape, the
    results of one real call: the plan keeps every host call, minus MuJoCo's work."""

    def wrap(real):
        cache = {}

        def stub(*args, **kw):
            key = (tuple(np.shape(a) for a in args), tuple(sorted(kw.items())))
            if key not in cache:
                cache[key] = real(*args, **kw)
            return cache[key]

        return stub

    _wrap_callbacks(sim, wrap)


def _timed(sim, seconds: list) -> None:
    """Wraps ``sim``'s host callbacks so that each call adds its wall time to ``seconds``."""

    def wrap(real):
        def timed(*args, **kw):
            t0 = time.perf_counter()
            try:
                return real(*args, **kw)
            finally:
                seconds.append(time.perf_counter() - t0)

        return timed

    _wrap_callbacks(sim, wrap)


def overhead(name: str, n_envs: int, repeats: int) -> dict:
    """One plan's time split, from three copies of the same jitted plan timed in turn:
    ``plan`` as it runs; ``no_physics`` (:func:`_no_physics`: XLA's work and JAX's callback
    machinery, without the backend's host code, which the stub skips); ``timed`` with the
    host callbacks timed and ``NativeSim.trace`` on, which gives per plan the host
    callbacks' wall time and the C calls' own time within them (the backend's Python is
    the difference, an upper bound: it includes the trace's copies of each call's inputs).
    Medians; the parts are measured in different plans, so they need not add up exactly."""
    host_s: list[float] = []
    plans = {}
    for kind in ("plan", "no_physics", "timed"):
        task = envs.make(name, backend="native")  # its own jitted functions and host calls
        if kind == "no_physics":
            _no_physics(task.native)
        elif kind == "timed":
            _timed(task.native, host_s)
        plans[kind] = (*_batched_plan(task, n_envs), task)
    per_plan: dict[str, list[float]] = {"host": [], "mujoco": []}

    def timed_plan():
        fn, args, task = plans["timed"]
        host_s.clear()
        task.native.trace = []
        try:
            jax.block_until_ready(fn(*args))
            per_plan["mujoco"].append(sum(c.seconds for c in task.native.trace))
        finally:
            task.native.trace = None
        per_plan["host"].append(sum(host_s))

    fns = {k: (lambda f=f, a=a: jax.block_until_ready(f(*a))) for k, (f, a, _) in plans.items()}
    fns["timed"] = timed_plan
    times = _interleaved(fns, repeats)
    c_s = statistics.median(per_plan["mujoco"][1:])  # after the warm-up call
    host = statistics.median(per_plan["host"][1:])
    return {
        "envs": n_envs,
        "plan_s": times["plan"],
        "no_physics_plan_s": times["no_physics"],
        "timed_plan_s": times["timed"],
        "host_callbacks_s": host,
        "mujoco_call_s": c_s,
        "backend_python_s": host - c_s,
        "not_mujoco_s": times["plan"] - c_s,
        "mujoco_share_of_plan": c_s / times["plan"],
    }


_COMPILE = """
import json, sys, time
import jax
from apexjax import envs, presets
from apexjax.loop import TrainConfig, build_task, init_train_state, make_train_step
from apexjax.planning import icem
from apexjax.planning.noise import colored_noise
from apexjax.planning.mpc import run_mpc
name = sys.argv[1]
out = {}
task = envs.make(name, backend="native")
cfg = icem.ICEMConfig(beta=envs.planner_beta(name))
t0 = time.perf_counter()
r = run_mpc(cfg, task, jax.random.key(0), 2, num_steps=2, chunk_size=1)
out["plan_compile_s"] = r["compile_s"]
out["plan_first_run_s"] = time.perf_counter() - t0
base = TrainConfig(task=name, backend="native")
config = presets.apply_overrides(base, presets.preset_overrides(name, "cpu"))
task = build_task(config)
state = init_train_state(config, task)
t0 = time.perf_counter()
make_train_step(config, task).lower(state).compile()
out["train_step_compile_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def cold_compile(name: str) -> dict:
    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", _COMPILE, name], env=env, capture_output=True, text=True, timeout=900
    )
    if p.returncode:
        return {"error": p.stderr[-2000:]}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--envs", default="1,4")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sections", default="efficiency,compile")
    p.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/native_backend.json")
    )
    args = p.parse_args(argv)
    sections = args.sections.split(",")
    out = {
        "benchmark": "native_backend",
        "environment": environment_info(),
        "command": "python benchmarks/native_backend.py " + " ".join(argv or sys.argv[1:]),
        "planner": "iCEM N=40, I=3, K=10, h=30, the task's beta (paper budget)",
        "tasks": {},
    }
    for name in args.tasks.split(","):
        row = out["tasks"].setdefault(name, {})
        if "efficiency" in sections:
            row["efficiency"] = [
                efficiency(name, int(e), args.repeats) for e in args.envs.split(",")
            ]
            for r in row["efficiency"]:
                print(
                    f"{name:22s} E={r['envs']}: plan {r['plan_physics_steps_per_s']:9.0f} phys/s, "
                    f"raw rollout {r['raw_rollout_physics_steps_per_s']:9.0f}, raw batch "
                    f"{r['raw_batch_physics_steps_per_s']:9.0f}: plan/raw {r['plan_over_raw']:.2f}",
                    flush=True,
                )
        if "overhead" in sections:
            row["overhead"] = [overhead(name, int(e), args.repeats) for e in args.envs.split(",")]
            for r in row["overhead"]:
                print(
                    f"{name:22s} E={r['envs']}: plan {r['plan_s'] * 1e3:.2f} ms, MuJoCo's C "
                    f"calls {r['mujoco_call_s'] * 1e3:.2f} ms, backend Python "
                    f"{r['backend_python_s'] * 1e3:.2f} ms, without host code "
                    f"{r['no_physics_plan_s'] * 1e3:.2f} ms",
                    flush=True,
                )
        if "compile" in sections:
            row["compile"] = cold_compile(name)
            print(f"{name:22s} cold compile {row['compile']}", flush=True)
        write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The native backend's numbers: planner efficiency against raw MuJoCo, and cold compiles.

Two sections, every shipped MuJoCo task, native backend, measured side by side in one run:

``efficiency``
    One jitted iCEM control step (:func:`apexjax.planning.icem.plan`, the ``paper`` budget:
    N = 40, I = 3, K = 10, h = 30, the task's beta) for E environments at once (vmap), against
    raw batched native physics at the same batch sizes per iteration (E x the iteration's
    population, shifted elites included), the same horizon and MuJoCo's own threads, on the
    planner's workload (each environment's start state and model fields, controls drawn as
    the planner's first iteration draws them):
    ``mujoco.rollout`` (one C call per iteration, controls held for frame_skip substeps) and
    ``mujoco.batch`` stepped one control step at a time (what the backend calls).
    Reported: simulated physics steps per second of each, and the planner's fraction of the
    faster raw baseline (1.0 = no overhead). Fetch acts through a mocap target, so its raw
    rollouts drive the actuators with random controls instead (same model, same steps).
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
from apexjax.planning.noise import colored_noise
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


def efficiency(name: str, n_envs: int, repeats: int) -> dict:
    task = envs.make(name, backend="native")
    cfg = _planner(name)
    keys = jax.random.split(jax.random.key(0), n_envs)
    states = jax.jit(jax.vmap(task.reset))(keys)
    ps = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (n_envs, *x.shape)), icem.init(cfg, task.action_bounds)
    )
    t0 = time.perf_counter()
    plan = jax.jit(jax.vmap(lambda k, p, s: icem.plan(cfg, k, p, s, task)[0]))
    plan = plan.lower(keys, ps, states).compile()
    compile_s = time.perf_counter() - t0

    rows = list(icem.population_sizes(cfg))
    rows[0] += icem.num_keep(cfg)
    h, fs, m = cfg.horizon, task.frame_skip, task.mj_model
    batches = [n_envs * r for r in rows]
    # The raw baselines simulate the planner's own workload: every environment's start state
    # and model fields (the door's drawn position), and controls drawn as the planner's
    # first iteration draws them (colored noise of the task's beta around mid-range,
    # init_std, clipped to the bounds); rows are environment-major, as the vmap lays them out.
    lo, hi = m.actuator_ctrlrange.T
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    ctrls = []
    for i, b in enumerate(batches):
        eps = colored_noise(jax.random.key(100 + i), cfg.beta, (b, h, m.nu))
        c = np.clip(mid + cfg.init_std * half * np.asarray(eps, np.float64), lo, hi)
        ctrls.append(np.repeat(c, fs, axis=1))
    env_rows = np.asarray(states.data.state).view(np.float64)  # [E, nstate]
    values = jax.vmap(task.model_fields)(states.info) if task.model_field_names else {}
    values = {k: np.asarray(v, np.float64) for k, v in values.items()}
    full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    models, starts = [], []
    for e in range(n_envs):
        me = copy.copy(m)
        for k, v in values.items():
            getattr(me, k)[...] = v[e]
        d = mujoco.MjData(me)
        mujoco.mj_setState(me, d, env_rows[e], mujoco.mjtState.mjSTATE_INTEGRATION)
        start = np.empty(mujoco.mj_stateSize(me, full))
        mujoco.mj_getState(me, d, start, full)
        models.append(me)
        starts.append(start)
    threads = default_threads()
    datas = [mujoco.MjData(m) for _ in range(threads)]
    sims = {}
    for b in set(batches):
        sim = mj_batch.Batch(m, b, nthread=threads)
        for k, v in values.items():
            sim.expand(k)[...] = np.repeat(v, b // n_envs, axis=0)
        sims[b] = sim
    per_row = {b: np.repeat(np.arange(n_envs), b // n_envs) for b in set(batches)}
    # mujoco.rollout's per-simulation models and start states, built before the timing
    row_models = {b: [models[e] for e in per_row[b]] for b in set(batches)}
    row_starts = {b: np.array([starts[e] for e in per_row[b]]) for b in set(batches)}

    def stepped():
        for b, c in zip(batches, ctrls, strict=True):
            sim = sims[b]
            sim.state[:] = env_rows[per_row[b]]
            for t in range(h):
                sim.ctrl[:] = c[:, t * fs]
                sim.step(nstep=fs)

    with mj_rollout.Rollout(nthread=threads) as pool:
        # interleaved, so that a drift in the machine's speed hits all three alike
        fns = {
            "plan": lambda: jax.block_until_ready(plan(keys, ps, states)),
            "rollout": lambda: [
                pool.rollout(row_models[len(c)], datas, row_starts[len(c)], c) for c in ctrls
            ],
            "batch": stepped,
        }
        times = _interleaved(fns, repeats)
    plan_s, rollout_s, batch_s = times["plan"], times["rollout"], times["batch"]
    physics = sum(batches) * h * fs
    best_raw = min(rollout_s, batch_s)
    return {
        "envs": n_envs,
        "batch_per_iteration": batches,
        "horizon": h,
        "frame_skip": fs,
        "threads": threads,
        "physics_steps_per_plan": physics,
        "plan_compile_s": compile_s,
        "plan_s": plan_s,
        "plan_physics_steps_per_s": physics / plan_s,
        "raw_rollout_s": rollout_s,
        "raw_rollout_physics_steps_per_s": physics / rollout_s,
        "raw_batch_s": batch_s,
        "raw_batch_physics_steps_per_s": physics / batch_s,
        "plan_over_raw": best_raw / plan_s,
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
        if "compile" in sections:
            row["compile"] = cold_compile(name)
            print(f"{name:22s} cold compile {row['compile']}", flush=True)
        write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

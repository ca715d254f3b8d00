"""Batched environment step throughput: MJX (vmap x lax.scan) against native ``mujoco.rollout``.

Per task: ``batch`` environments, each stepped ``horizon`` control steps with random actions,
as one jitted call (vmap over the batch, lax.scan over time). Reports control steps/s and
physics steps/s (x frame_skip), compile time apart from run time (median of ``--repeats``).
The baseline, measured in the same run: native ``mujoco.rollout`` on the same model, batch
and number of physics steps, with one thread per usable core.

    python benchmarks/env_throughput.py [--tasks a,b] [--batch 256] [--horizon 30] [--out ...]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import jax
import mujoco
import numpy as np
from mujoco import rollout

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import apexjax.envs as envs
from benchmarks._common import environment_info, time_call, write_json

_DEFAULT_TASKS = ("cartpole_swingup", "reacher", "halfcheetah_running", "humanoid_standup")


def measure_mjx(task: envs.Task, batch: int, horizon: int, seed: int, repeats: int) -> dict:
    """MJX: ``batch`` x ``horizon`` control steps in one jitted call."""
    keys = jax.random.split(jax.random.key(seed), batch)
    states = jax.jit(jax.vmap(task.reset))(keys)
    lo, hi = task.action_bounds
    actions = jax.random.uniform(
        jax.random.key(seed + 1), (batch, horizon, task.action_dim), minval=lo, maxval=hi
    )

    def rollout_one(state, acts):  # acts [H, A] -> final qpos [nq]
        final, _ = jax.lax.scan(lambda s, a: (task.step(s, a), None), state, acts)
        return final.data.qpos

    fn = jax.jit(jax.vmap(rollout_one))
    _, timing = time_call(fn, states, actions, repeats=repeats)
    control = batch * horizon / timing["run_s"]
    return {
        "compile_s": timing["compile_s"] - timing["run_s"],
        "first_call_s": timing["compile_s"],
        "run_s": timing["run_s"],
        "control_steps_per_s": control,
        "physics_steps_per_s": control * task.frame_skip,
        "states": states,
        "actions": np.asarray(actions),
    }


def measure_native(task: envs.MjxTask, states, actions: np.ndarray, repeats: int) -> dict:
    """Native ``mujoco.rollout`` from the same initial qpos/qvel with the same controls."""
    m = task.mj_model
    batch, horizon, _ = actions.shape
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    d = mujoco.MjData(m)
    init = np.zeros((batch, mujoco.mj_stateSize(m, spec)))
    qpos, qvel = np.asarray(states.data.qpos), np.asarray(states.data.qvel)
    for i in range(batch):
        mujoco.mj_resetData(m, d)
        d.qpos[:], d.qvel[:] = qpos[i], qvel[i]
        mujoco.mj_getState(m, d, init[i], spec)
    if actions.shape[-1] != m.nu:
        # the task acts through something else than ctrl (a mocap target): native MuJoCo
        # gets random controls in the actuators' ranges, the same physics per step
        lo, hi = m.actuator_ctrlrange.T
        actions = np.random.default_rng(0).uniform(lo, hi, size=(batch, horizon, m.nu))
    # each control held for frame_skip physics steps: [B, H * frame_skip, A]
    control = np.repeat(actions.astype(np.float64), task.frame_skip, axis=1)
    threads = max(1, len(os.sched_getaffinity(0)))
    datas = [mujoco.MjData(m) for _ in range(threads)]
    nstep = horizon * task.frame_skip
    state_out = np.zeros((batch, nstep, init.shape[1]))

    def call():
        return rollout.rollout(m, datas, init, control, state=state_out)

    _, timing = time_call(call, repeats=repeats)
    physics = batch * nstep / timing["run_s"]
    return {
        "threads": threads,
        "run_s": timing["run_s"],
        "physics_steps_per_s": physics,
        "control_steps_per_s": physics / task.frame_skip,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(_DEFAULT_TASKS), help="comma-separated names")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--horizon", type=int, default=30, help="control steps per rollout")
    p.add_argument("--repeats", type=int, default=5, help="timed calls after the first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/env_throughput.json")
    args = p.parse_args(argv)

    result = {
        "benchmark": "env_throughput",
        "command": "python benchmarks/env_throughput.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "batch": args.batch,
        "horizon": args.horizon,
        "repeats": args.repeats,
        "environment": environment_info(),
        # other processes on the machine depress every number alike; ratios are side by side
        "load_average_at_start": list(os.getloadavg()),
        "results": [],
    }
    rows = result["results"]
    header = (
        f"{'task':22s} {'fs':>3s} {'MJX ctrl/s':>11s} {'MJX phys/s':>11s} "
        f"{'native phys/s':>13s} {'MJX/native':>10s} {'compile s':>9s}"
    )
    print(header, flush=True)
    for name in [t for t in args.tasks.split(",") if t]:
        task = envs.make(name)
        mjx_res = measure_mjx(task, args.batch, args.horizon, args.seed, args.repeats)
        states, actions = mjx_res.pop("states"), mjx_res.pop("actions")
        native = measure_native(task, states, actions, args.repeats)
        ratio = mjx_res["physics_steps_per_s"] / native["physics_steps_per_s"]
        row = {
            "task": name,
            "frame_skip": task.frame_skip,
            "timestep_s": float(task.mj_model.opt.timestep),
            "nq": int(task.mj_model.nq),
            "nv": int(task.mj_model.nv),
            "mjx": mjx_res,
            "native_rollout": native,
            "ratio_mjx_over_native": ratio,
        }
        row["load_average_after"] = list(os.getloadavg())
        rows.append(row)
        print(
            f"{name:22s} {task.frame_skip:3d} {mjx_res['control_steps_per_s']:11.0f} "
            f"{mjx_res['physics_steps_per_s']:11.0f} {native['physics_steps_per_s']:13.0f} "
            f"{ratio:10.3f} {mjx_res['compile_s']:9.1f}",
            flush=True,
        )
        write_json(args.out, result)  # after every task, so a partial run keeps its rows
    return result


if __name__ == "__main__":
    main()

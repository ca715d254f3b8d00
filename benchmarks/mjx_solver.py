"""MJX solver settings per task: speed and fidelity against native MuJoCo, side by side.

For every task and every candidate setting (MuJoCo's defaults as the task's model has
them, and Newton with fewer iterations / line-search steps), in one process:

* speed: a batch of ``--batch`` environments stepped ``--horizon`` control steps with
  random actions in one jitted MJX call (vmap x lax.scan); compile time apart from the
  median run time; physics steps per second and the ratio against the defaults;
* fidelity: one MJX control step from each state of a native trajectory (random actions
  from the task's reset; for the door, the hand pushed into the door) against the native
  backend (bit-identical to ``mj_step``) from the same state, max |error| of qpos and qvel,
  next to the task's tolerance (tests/test_fidelity.py, tests/test_door.py,
  tests/test_fetch.py).

The setting a task ships with is :attr:`apexjax.envs.MujocoTask.mjx_options`; this script
is the evidence for it.

    python benchmarks/mjx_solver.py [--tasks a,b] [--batch 16] [--horizon 10] [--out ...]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import apexjax.envs as envs
from benchmarks._common import environment_info, time_call, write_json

TASKS = (
    "pendulum_swingup",
    "cartpole_swingup",
    "reacher",
    "halfcheetah_running",
    "humanoid_standup",
    "door",
    "fetch_pick_and_place",
)
SETTINGS = {
    "default": {},
    # MuJoCo's default tolerance (1e-8) is below float32 resolution, so MJX's solver can
    # run to its iteration cap; a float32-reachable tolerance stops it at convergence
    "tol_1e-6": {"tolerance": 1e-6},
    "tol_1e-6_it_10": {"tolerance": 1e-6, "iterations": 10, "ls_iterations": 10},
    "newton_4_8": {"solver": "newton", "iterations": 4, "ls_iterations": 8},
    "newton_2_8": {"solver": "newton", "iterations": 2, "ls_iterations": 8},
    "newton_1_4": {"solver": "newton", "iterations": 1, "ls_iterations": 4},
}


def _with_options(name: str, options: dict) -> envs.MujocoTask:
    """Task ``name`` on MJX with exactly ``options`` (replacing the task's own)."""
    cls = type(envs.make(name, backend="native"))
    sub = type(f"{cls.__name__}Bench", (cls,), {"mjx_options": options})
    return sub(envs.config_class(name)(backend="mjx"))


def _trajectory(native: envs.MujocoTask, n: int, seed: int):
    """States ``[n]`` of a native episode under random actions (the door: the hand pushed
    into the door after 15 steps, and the last n of 15 + n states kept, so that they touch
    it), and the actions taken from them."""
    skip = 15 if native.name == "door" else 0
    n = n + skip
    state = jax.jit(native.reset)(jax.random.key(seed))
    lo, hi = native.action_bounds
    acts = np.random.default_rng(seed).uniform(lo, hi, (n, native.action_dim)).astype(np.float32)
    if native.name == "door":
        acts[:, 0] = np.where(np.arange(n) < 15, 0.0, hi[0])
        acts[:, 1:4] = 0.0
    step = jax.jit(native.step)
    states = []
    for a in acts:
        states.append(state)
        state = step(state, jnp.asarray(a))
    states = jax.tree.map(lambda *x: jnp.stack(x), *states[skip:])
    return states, jnp.asarray(acts[skip:])


def _one_step(task: envs.MujocoTask):
    def one(qpos, qvel, info, action):
        s = envs.State(data=task.make_data(qpos, qvel, info), t=jnp.zeros((), jnp.int32), info=info)
        s2 = task.step(s, action)
        return s2.data.qpos, s2.data.qvel

    return jax.jit(jax.vmap(one))


def measure(
    name: str, batch: int, horizon: int, states: int, repeats: int, settings: list[str]
) -> dict:
    native = envs.make(name, backend="native")
    traj, acts = _trajectory(native, states, seed=0)
    ref_p, ref_v = _one_step(native)(traj.data.qpos, traj.data.qvel, traj.info, acts)
    keys = jax.random.split(jax.random.key(1), batch)
    lo, hi = native.action_bounds
    actions = jax.random.uniform(
        jax.random.key(2), (batch, horizon, native.action_dim), minval=lo, maxval=hi
    )
    out = {"frame_skip": native.frame_skip, "settings": {}}
    for label in settings:
        options = SETTINGS[label]
        task = _with_options(name, options)
        starts = jax.jit(jax.vmap(task.reset))(keys)

        def roll(s, a, task=task):
            return jax.lax.scan(lambda s, x: (task.step(s, x), None), s, a)[0].data.qpos

        _, timing = time_call(jax.jit(jax.vmap(roll)), starts, actions, repeats=repeats)
        p, v = _one_step(task)(traj.data.qpos, traj.data.qvel, traj.info, acts)
        row = {
            "options": options,
            "solver": {
                "solver": int(task.mjx_mj_model.opt.solver),
                "iterations": int(task.mjx_mj_model.opt.iterations),
                "ls_iterations": int(task.mjx_mj_model.opt.ls_iterations),
            },
            "compile_s": timing["compile_s"] - timing["run_s"],
            "run_s": timing["run_s"],
            "physics_steps_per_s": batch * horizon * task.frame_skip / timing["run_s"],
            "qpos_max_error": float(np.abs(np.asarray(p) - np.asarray(ref_p)).max()),
            "qvel_max_error": float(np.abs(np.asarray(v) - np.asarray(ref_v)).max()),
        }
        out["settings"][label] = row
        print(
            f"{name:22s} {label:11s} compile {row['compile_s']:6.1f} s  "
            f"{row['physics_steps_per_s']:10.0f} phys/s  qpos err {row['qpos_max_error']:.2e}  "
            f"qvel err {row['qvel_max_error']:.2e}",
            flush=True,
        )
    base = out["settings"]["default"]["physics_steps_per_s"]
    for row in out["settings"].values():
        row["speedup_vs_default"] = row["physics_steps_per_s"] / base
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--states", type=int, default=40, help="fidelity: states of the trajectory")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settings", default=",".join(SETTINGS), help="labels of SETTINGS to run")
    p.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/mjx_solver.json")
    )
    args = p.parse_args(argv)
    results = {
        "benchmark": "mjx_solver",
        "environment": environment_info(),
        "batch": args.batch,
        "horizon": args.horizon,
        "fidelity_states": args.states,
        "tasks": {},
    }
    for name in args.tasks.split(","):
        results["tasks"][name] = measure(
            name, args.batch, args.horizon, args.states, args.repeats, args.settings.split(",")
        )
        write_json(args.out, results)  # after every task: a long run keeps what it measured
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

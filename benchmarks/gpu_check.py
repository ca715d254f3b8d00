"""The accelerator check: MJX planner throughput on one GPU, in one short run (<= 8 minutes).

Per task (cart-pole, half-cheetah, humanoid standup, door, Fetch), on the MJX backend with
the task's tuned solver settings (:attr:`apexjax.envs.MujocoTask.mjx_options`):

* planner: one iCEM control step (the ``paper`` planner budget: N = 40, I = 3, K = 10,
  h = 30, the task's beta) for ``--envs`` environments at once (vmap), jitted; compile
  time apart from the median of ``--repeats`` timed calls; simulated control and physics
  steps per second;
* raw physics, side by side in the same run: the same number of MJX control steps as one
  plan, without the planner (vmap x lax.scan), so the planner's overhead is a ratio;
* MJX's Warp implementation (``mjx.put_model(..., impl="warp")``) where the installed MJX
  offers it: raw batched ``mjx.step`` throughput at the planner's batch, or the reason it
  could not run.

Tasks are measured in order until ``--budget-s`` is spent (the JSON says which were
skipped). Writes ``benchmarks/results/gpu_check.json`` (hardware, versions, batch sizes).

    python benchmarks/gpu_check.py [--envs 64] [--tasks a,b] [--budget-s 420] [--quick]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import traceback

import jax
import jax.numpy as jnp

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import apexjax.envs as envs
from apexjax.planning import icem
from benchmarks._common import environment_info, time_call, write_json

TASKS = (
    "cartpole_swingup",
    "halfcheetah_running",
    "humanoid_standup",
    "door",
    "fetch_pick_and_place",
)


def _planner(name: str, quick: bool) -> icem.ICEMConfig:
    beta = envs.planner_beta(name)
    if quick:
        return icem.ICEMConfig(population=8, elites=2, horizon=4, iterations=2, beta=beta)
    return icem.ICEMConfig(beta=beta)  # N=40, I=3, K=10, h=30: the paper budget


def measure_planner(task: envs.MujocoTask, cfg: icem.ICEMConfig, n_envs: int, repeats: int):
    keys = jax.random.split(jax.random.key(0), n_envs)
    states = jax.jit(jax.vmap(task.reset))(keys)
    ps = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (n_envs, *x.shape)), icem.init(cfg, task.action_bounds)
    )
    plan = jax.jit(jax.vmap(lambda k, p, s: icem.plan(cfg, k, p, s, task)[0]))
    _, t = time_call(plan, keys, ps, states, repeats=repeats)
    sims = n_envs * icem.simulated_per_step(cfg)
    return states, {
        "compile_s": t["compile_s"] - t["run_s"],
        "run_s": t["run_s"],
        "simulated_control_steps": sims,
        "control_steps_per_s": sims / t["run_s"],
        "physics_steps_per_s": sims * task.frame_skip / t["run_s"],
    }


def measure_raw(task: envs.MujocoTask, states, cfg: icem.ICEMConfig, n_envs: int, repeats: int):
    """The plan's simulated control steps as raw MJX rollouts (vmap x scan)."""
    rows = sum(icem.population_sizes(cfg)) + icem.num_keep(cfg)
    lo, hi = task.action_bounds
    acts = jax.random.uniform(
        jax.random.key(1), (n_envs, rows, cfg.horizon, task.action_dim), minval=lo, maxval=hi
    )

    def one(s, a):
        return jax.lax.scan(lambda c, x: (task.step(c, x), None), s, a)[0].data.qpos

    fn = jax.jit(jax.vmap(lambda s, a: jax.vmap(lambda x: one(s, x))(a)))
    _, t = time_call(fn, states, acts, repeats=repeats)
    sims = n_envs * rows * cfg.horizon
    return {
        "compile_s": t["compile_s"] - t["run_s"],
        "run_s": t["run_s"],
        "control_steps_per_s": sims / t["run_s"],
        "physics_steps_per_s": sims * task.frame_skip / t["run_s"],
    }


def measure_warp(task: envs.MujocoTask, batch: int, steps: int, repeats: int) -> dict:
    """Raw batched ``mjx.step`` with MJX's Warp implementation, or why it cannot run."""
    from mujoco import mjx

    try:
        m = mjx.put_model(task.mjx_mj_model, impl="warp")
        d0 = mjx.make_data(task.mjx_mj_model, impl="warp")
        data = jax.vmap(lambda _: d0)(jnp.arange(batch))

        def roll(d):
            return jax.lax.fori_loop(
                0, steps, lambda _, x: jax.vmap(lambda y: mjx.step(m, y))(x), d
            )

        _, t = time_call(jax.jit(roll), data, repeats=repeats)
        return {
            "available": True,
            "compile_s": t["compile_s"] - t["run_s"],
            "run_s": t["run_s"],
            "batch": batch,
            "physics_steps_per_s": batch * steps / t["run_s"],
        }
    except Exception as e:  # not installed, not supported on this device or model, ...
        return {
            "available": False,
            "error": f"{type(e).__name__}: {e}"[:500],
            "trace": traceback.format_exc(limit=3)[-1500:],
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--envs", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=420.0, help="stop starting tasks after this")
    p.add_argument("--quick", action="store_true", help="tiny planner (a check that it runs)")
    p.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/gpu_check.json")
    )
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    out = {
        "benchmark": "gpu_check",
        "environment": environment_info(),
        "jax_backend": jax.default_backend(),
        "envs": args.envs,
        "quick": args.quick,
        "tasks": {},
        "skipped": [],
    }
    for name in args.tasks.split(","):
        if time.perf_counter() - t_start > args.budget_s:
            out["skipped"].append(name)
            continue
        task = envs.make(name, backend="mjx")
        cfg = _planner(name, args.quick)
        row = {
            "mjx_options": dict(task.mjx_options),
            "planner": {
                "population": cfg.population,
                "iterations": cfg.iterations,
                "elites": cfg.elites,
                "horizon": cfg.horizon,
                "beta": cfg.beta,
            },
        }
        states, row["plan"] = measure_planner(task, cfg, args.envs, args.repeats)
        row["raw_mjx"] = measure_raw(task, states, cfg, args.envs, args.repeats)
        row["plan_over_raw"] = (
            row["plan"]["control_steps_per_s"] / row["raw_mjx"]["control_steps_per_s"]
        )
        batch = args.envs * (sum(icem.population_sizes(cfg)) + icem.num_keep(cfg))
        row["warp"] = measure_warp(task, batch, task.frame_skip * cfg.horizon, args.repeats)
        out["tasks"][name] = row
        warp = row["warp"]
        warp_text = f"{warp['physics_steps_per_s']:.0f} phys/s" if warp["available"] else "n/a"
        print(
            f"{name:22s} plan {row['plan']['physics_steps_per_s']:12.0f} phys/s "
            f"(compile {row['plan']['compile_s']:.1f} s), plan/raw {row['plan_over_raw']:.2f}, "
            f"warp {warp_text}",
            flush=True,
        )
        write_json(args.out, out)
    out["total_s"] = time.perf_counter() - t_start
    write_json(args.out, out)
    print(f"wrote {args.out} ({out['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

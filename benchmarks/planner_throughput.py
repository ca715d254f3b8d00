"""Planner throughput: simulated steps/s inside ``icem.plan`` against the raw MJX step scan.

Per task, three jitted functions over the SAME shapes (each iteration's population as a
batch, the planner's horizon), measured side by side in one run:

  raw      vmap x lax.scan of ``task.step`` only (the simulator's ceiling), the
           iterations' batches run one after another as in the planner;
  rollout  the planner's rollouts with the per-step cost and finiteness check, no planner
           logic (isolates the cost function's share);
  plan     one full ``icem.plan`` call (sampling, colored noise, sorting, refits too).

ratio = plan steps/s / raw steps/s (target >= 0.90); peak memory is XLA's compiled
estimate (arguments + outputs + temporaries), planner vs raw (target <= 1.2x).

``--envs E`` plans for E environments at once (``jax.vmap`` over env states, as training
does), so the batch per simulator call is E x the population: on an accelerator a single
environment's population is far too small a batch to measure throughput.

    python benchmarks/planner_throughput.py [--tasks a,b] [--population 40] [--envs 1] [--out ...]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

import jax
import jax.numpy as jnp

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import apexjax.envs as envs
from apexjax.bench.planner import chained, iteration_batches, raw_final_qpos
from apexjax.envs import planner_beta
from apexjax.planning import icem
from apexjax.planning.rollout import rollout_open_loop_batch
from benchmarks._common import environment_info, time_call, write_json

_OUT = pathlib.Path(__file__).parent / "results" / "planner_throughput.json"


def _peak_bytes(jitted, *args) -> int | None:
    try:
        m = jitted.lower(*args).compile().memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def measure(
    task_name: str, config: icem.ICEMConfig, seed: int, repeats: int, num_envs: int = 1
) -> dict:
    task = envs.make(task_name)
    state = jax.jit(jax.vmap(task.reset))(jax.random.split(jax.random.key(seed), num_envs))
    rows, acts = iteration_batches(task, config, seed, num_envs)
    h = config.horizon
    steps = num_envs * sum(rows) * h
    assert steps == num_envs * icem.simulated_per_step(config)

    def per_env(f):  # f(state, batch) for one env -> over the env axis of both
        return jax.vmap(f)

    raw = chained(per_env(lambda s, x: jax.vmap(lambda a: raw_final_qpos(task, s, a))(x)))
    roll = chained(per_env(lambda s, x: rollout_open_loop_batch(task, s, x)[0]))
    ps = jax.vmap(lambda _: icem.init(config, task.action_bounds))(jnp.arange(num_envs))
    one_plan = lambda k, p, s: icem.plan(config, k, p, s, task)  # noqa: E731
    plan = jax.jit(lambda k, p, s: jax.vmap(one_plan)(jax.random.split(k, num_envs), p, s))

    out = {
        "task": task_name,
        "num_envs": num_envs,
        "rows_per_iteration": rows,
        "horizon": h,
        "steps_per_call": steps,
    }
    fns = {
        "raw": (raw, (state, acts)),
        "rollout": (roll, (state, acts)),
        "plan": (plan, (jax.random.key(seed), ps, state)),
    }
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for name, (fn, a) in fns.items():  # compile (first call) apart
        _, t = time_call(fn, *a, repeats=1)
        out[name] = {"compile_s": t["compile_s"], "peak_bytes": _peak_bytes(fn, *a)}
    for _ in range(repeats):  # interleaved, so load changes hit all three alike
        for name, (fn, a) in fns.items():
            _, t = time_call(fn, *a, repeats=1)
            runs[name].append(t["run_s"])
    for name in fns:
        run_s = statistics.median(runs[name])
        out[name].update(run_s=run_s, runs_s=runs[name], steps_per_s=steps / run_s)
    out["ratio_plan_vs_raw"] = out["plan"]["steps_per_s"] / out["raw"]["steps_per_s"]
    out["ratio_rollout_vs_raw"] = out["rollout"]["steps_per_s"] / out["raw"]["steps_per_s"]
    if out["raw"]["peak_bytes"] and out["plan"]["peak_bytes"]:
        out["memory_plan_vs_raw"] = out["plan"]["peak_bytes"] / out["raw"]["peak_bytes"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="pendulum_swingup,cartpole_swingup")
    p.add_argument("--population", type=int, default=40)
    p.add_argument("--horizon", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--envs", type=int, default=1, help="environments planned for at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=pathlib.Path, default=_OUT)
    args = p.parse_args(argv)
    results = []
    cmd = "python benchmarks/planner_throughput.py " + " ".join(argv or sys.argv[1:])
    for name in args.tasks.split(","):
        config = icem.ICEMConfig(
            population=args.population,
            horizon=args.horizon,
            beta=planner_beta(name),
        )
        r = measure(name, config, args.seed, args.repeats, args.envs)
        r["config"] = {
            "population": config.population,
            "horizon": config.horizon,
            "num_envs": args.envs,
        }
        results.append(r)
        print(
            f"{name}: raw {r['raw']['steps_per_s']:.0f} steps/s, rollout+cost "
            f"{r['rollout']['steps_per_s']:.0f}, plan {r['plan']['steps_per_s']:.0f} "
            f"(ratio {r['ratio_plan_vs_raw']:.2f}, memory x{r.get('memory_plan_vs_raw', 0):.2f}); "
            f"compile raw {r['raw']['compile_s']:.0f} s, plan {r['plan']['compile_s']:.0f} s",
            flush=True,
        )
        doc = {"command": cmd.strip(), "environment": environment_info(), "results": results}
        write_json(args.out, doc)  # after every task, so a cut run keeps what finished
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing anything
    sys.exit(main())

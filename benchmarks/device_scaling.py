"""Scaling over local devices: batched planning and the APEX training step on 1, 2, 4, 8.

On CPU the devices are XLA host devices (``--xla_force_host_platform_device_count``), which
must exist before JAX starts, so each device count runs in its own subprocess; all of them
run in this one invocation on the same machine, and the JSON holds every figure:

  plan   ``jax.vmap(icem.plan)`` over ``--envs`` environments, split over the devices with
         :func:`apexjax.sharding.split_over_devices` (simulated control steps/s);
  train  one :func:`apexjax.loop.make_train_step` iteration with ``num_devices`` = N
         (seconds per iteration and simulated control steps/s).

speedup = throughput(N) / throughput(1); efficiency = speedup / N. Compile times are
reported apart, with their ratio to the single-device compile.

    python benchmarks/device_scaling.py --task cartpole_swingup --devices 1,2,4,8 \\
        --out benchmarks/results/device_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

_CHILD = r"""
import dataclasses, json, statistics, sys, time
import jax, jax.numpy as jnp
import apexjax.envs as envs
from apexjax.envs import planner_beta
from apexjax.presets import train_config
from apexjax.driver import fit
from apexjax.loop import build_task, init_train_state, place_state
from apexjax.planning import icem
from apexjax.sharding import make_mesh, shard_batch, split_over_devices

a = json.loads(sys.argv[1])
n, task_name, E, reps = a["devices"], a["task"], a["envs"], a["repeats"]
assert jax.local_device_count() >= n, jax.devices()
out = {"devices": n}

task = envs.make(task_name)
cfg = icem.ICEMConfig(population=a["population"], horizon=a["horizon"],
                      beta=planner_beta(task_name))
mesh = make_mesh(n) if n > 1 else None
plan_batch = split_over_devices(
    lambda keys, ps, s: jax.vmap(lambda k, p, x: icem.plan(cfg, k, p, x, task))(keys, ps, s),
    mesh, (True, True, True))
plan = jax.jit(plan_batch)
states = jax.jit(jax.vmap(task.reset))(jax.random.split(jax.random.key(0), E))
ps = jax.vmap(lambda _: icem.init(cfg, task.action_bounds))(jnp.arange(E))
keys = jax.random.split(jax.random.key(1), E)
keys, ps, states = shard_batch((keys, ps, states), mesh)
t = time.perf_counter(); c = plan.lower(keys, ps, states).compile()
out["plan_compile_s"] = time.perf_counter() - t
jax.block_until_ready(c(keys, ps, states))
runs = []
for _ in range(reps):
    t = time.perf_counter(); jax.block_until_ready(c(keys, ps, states))
    runs.append(time.perf_counter() - t)
out["plan_run_s"] = statistics.median(runs)
out["plan_steps_per_s"] = E * icem.simulated_per_step(cfg) / out["plan_run_s"]

tcfg = train_config(task_name, overrides=a["train_set"] + [f"num_devices={n}"])
ttask = build_task(tcfg)
s0 = place_state(tcfg, init_train_state(tcfg, ttask))
# the library's outer loop: one warm-up iteration, then the timed ones
res = fit(tcfg, s0, task=ttask, iterations=1 + reps)
out["train_compile_s"] = res.compile_seconds
runs = [row["seconds"] for row in res.history[1:]]
m = res.history[-1]
out["train_run_s"] = statistics.median(runs)
out["train_steps_per_s"] = float(m["simulated_steps"]) / out["train_run_s"]
print("RESULT" + json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    from benchmarks._common import environment_info, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--devices", default="1,2,4,8")
    p.add_argument("--envs", type=int, default=16, help="environments planned for at once")
    p.add_argument("--population", type=int, default=40)
    p.add_argument("--horizon", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--train-set",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="training-step config (as apexjax train --set); default: a small CPU config",
    )
    p.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/device_scaling.json")
    )
    args = p.parse_args(argv)
    counts = [int(x) for x in args.devices.split(",")]
    train_set = args.train_set or [
        "num_envs=8",
        "episode_length=50",
        "sgd_steps=50",
        "planner.population=16",
        "planner.elites=4",
        "planner.horizon=20",
    ]
    rows = []
    cmd = "python benchmarks/device_scaling.py " + " ".join(argv or sys.argv[1:])
    for n in counts:
        if args.envs % n:
            raise SystemExit(f"--envs {args.envs} is not divisible by {n} devices")
        child_args = {
            "devices": n,
            "task": args.task,
            "envs": args.envs,
            "population": args.population,
            "horizon": args.horizon,
            "repeats": args.repeats,
            "train_set": train_set,
        }
        env = dict(os.environ)
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
        ).strip()
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(child_args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"{n} devices: the measurement failed (exit {proc.returncode})")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
        row = json.loads(line[len("RESULT") :])
        base = rows[0] if rows else row
        for what in ("plan", "train"):
            sp = row[f"{what}_steps_per_s"] / base[f"{what}_steps_per_s"]
            row[f"{what}_speedup"] = sp
            row[f"{what}_efficiency"] = sp / n * base["devices"]
            row[f"{what}_compile_ratio"] = row[f"{what}_compile_s"] / base[f"{what}_compile_s"]
        rows.append(row)
        print(
            f"{n} devices: plan {row['plan_steps_per_s']:.0f} steps/s (x{row['plan_speedup']:.2f}, "
            f"compile {row['plan_compile_s']:.0f} s), train {row['train_run_s']:.1f} s/iteration "
            f"(x{row['train_speedup']:.2f}, compile {row['train_compile_s']:.0f} s)",
            flush=True,
        )
        write_json(
            args.out,
            {
                "command": cmd.strip(),
                "environment": environment_info(),
                "task": args.task,
                "envs": args.envs,
                "planner": {"population": args.population, "horizon": args.horizon},
                "train_set": train_set,
                "results": rows,
            },
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

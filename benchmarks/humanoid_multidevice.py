"""Humanoid on several XLA host devices: does it compile, run, or hang? (a reproduction)

Each configuration runs in its own subprocess (host devices must exist before JAX starts)
under a hard wall-clock limit; a child still running at the limit is reported as
``"hang"`` (``"timeout_busy"`` when it was still using CPU, e.g. a slow compile), with the stage it was in (lower, compile, first call, ...), the CPU time it
used while stuck, Python stacks (``faulthandler``) and a summary of the native thread
stacks (``gdb``, when installed), and is then killed.

Workloads (``kind``):
  plain     ``jit(vmap(rollout))`` on one device;
  shard_map the same function wrapped in :func:`apexjax.sharding.split_over_devices`
            (``jax.shard_map``, each device runs its own slice, no collectives expected);
  named     ``jit(vmap(rollout))`` with inputs placed by ``NamedSharding`` over the batch
            axis: XLA's SPMD partitioner shards the program itself;
  plan      the real code path: ``jax.vmap(icem.plan)`` over environments, split with
            ``split_over_devices`` (as ``benchmarks/device_scaling.py``), tiny population;
  train     one :func:`apexjax.loop.make_train_step` iteration, tiny config;
  synthetic no MJX: a vmapped while loop with a data-dependent trip count, NamedSharding
            inputs (an all-reduce inside the loop, once per iteration);
  imbalanced no MJX: device 0 works long before a psum, the others wait at the rendezvous
            (shows XLA's stuck-rendezvous warning and, with the flags given, its abort).

A rollout is ``lax.scan`` of ``--steps`` control steps of ``task.step`` from a batch of
resets with random actions. For each configuration: the times of ``lower``, ``compile``,
first and second call, the collective ops in the compiled HLO (total and inside while
loops), and the outcome (``ok``, ``error``, ``hang``).

    python benchmarks/humanoid_multidevice.py --out benchmarks/results/humanoid_multidevice.json
    python benchmarks/humanoid_multidevice.py --only shard_map-2,named-2 --timeout 240
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

_CHILD = r"""
import faulthandler, json, os, re, sys, time
T0 = time.perf_counter()
a = json.loads(sys.argv[1])
faulthandler.dump_traceback_later(a["stack_after"], repeat=False, exit=False)

def log(stage, **kw):
    print(f"STAGE {time.perf_counter() - T0:8.2f} {stage} " + json.dumps(kw), file=sys.stderr,
          flush=True)

log("start")
import jax, jax.numpy as jnp
for k, v in a.get("jax_config", {}).items():
    jax.config.update(k, v)
import numpy as np
from mujoco import mjx
import apexjax.envs as envs
from apexjax.sharding import make_mesh, shard_batch, split_over_devices
from jax.sharding import NamedSharding, PartitionSpec
log("imported", devices=len(jax.devices()))

n, kind, B, T = a["devices"], a["kind"], a["batch"], a["steps"]
task = envs.make(a["task"])
if a.get("iterations") or a.get("ls_iterations"):
    if a.get("iterations"):
        task.mj_model.opt.iterations = a["iterations"]
    if a.get("ls_iterations"):
        task.mj_model.opt.ls_iterations = a["ls_iterations"]
    task.mjx_model = mjx.put_model(task.mj_model)
mesh = make_mesh(n) if n > 1 else None

def initial_states(B):
    # native mj_forward + mjx.put_data: the same pytree as jax.vmap(task.reset), without a
    # compile of MJX's forward pass (minutes on a loaded 2-core machine)
    import mujoco
    from apexjax.envs.base import State
    m, rng, ds = task.mj_model, np.random.default_rng(0), []
    for _ in range(B):
        d = mujoco.MjData(m)
        d.qpos[:] = m.qpos0 + rng.uniform(-0.01, 0.01, m.nq)
        d.qvel[:] = rng.uniform(-0.01, 0.01, m.nv)
        mujoco.mj_forward(m, d)
        ds.append(mjx.put_data(m, d))
    data = jax.tree.map(lambda *x: jnp.asarray(np.stack(x)), *ds)
    s = State(data=data, t=jnp.zeros((B,), jnp.int32))
    ref = jax.eval_shape(jax.vmap(task.reset), jax.random.split(jax.random.key(0), B))
    assert jax.tree.structure(s) == jax.tree.structure(ref)
    return s

def collectives(text):
    ops = ("all-reduce", "collective-permute", "all-gather", "all-to-all", "reduce-scatter")
    total = {op: len(re.findall(rf"= [^=]*\b{op}(-start)?\(", text)) for op in ops}
    # collectives inside computations that are the body/condition of a while loop
    loops = set()
    for m in re.finditer(r"while\([^)]*\)[^\n]*condition=%?([\w.\-]+)[^\n]*body=%?([\w.\-]+)", text):
        loops.update(m.groups())
    inside = 0
    for comp in re.split(r"\n(?=\S)", text):
        name = re.match(r"(?:ENTRY )?%?([\w.\-]+)", comp)
        if name and name.group(1) in loops:
            inside += sum(len(re.findall(rf"\b{op}(-start)?\(", comp)) for op in ops)
    return {k: v for k, v in total.items() if v}, inside

if kind == "train":
    from apexjax.presets import train_config
    from apexjax.loop import build_task, init_train_state, make_train_step, place_state
    tcfg = train_config(a["task"], overrides=a["train_set"] + [f"num_devices={n}", f"num_envs={B}"])
    ttask = build_task(tcfg)
    fn = make_train_step(tcfg, ttask)
    args = (place_state(tcfg, init_train_state(tcfg, ttask)),)
elif kind == "synthetic":
    # no MJX: a vmapped while loop with a data-dependent trip count per element (the
    # shape of MJX's solver loops); with NamedSharding inputs its condition needs an
    # all-reduce over the devices at every iteration
    def one(x):
        def cond(c): return (c[1] < 100_000) & (jnp.abs(c[0]) > 1e-6)
        def body(c): return (c[0] * 0.999, c[1] + 1)
        return jax.lax.while_loop(cond, body, (x, 0))[1]
    fn = jax.vmap(one)
    x = jnp.linspace(0.1, 10.0, B)
    args = (jax.device_put(x, NamedSharding(mesh, PartitionSpec("batch"))) if mesh else x,)
elif kind == "imbalanced":
    # no MJX: device 0 loops a["loop"] times before a psum, the others 10 times, so they
    # wait for it at the all-reduce rendezvous (XLA warns after
    # --xla_cpu_collective_call_warn_stuck_timeout_seconds, 20 s by default, and aborts
    # the process after --xla_cpu_collective_call_terminate_timeout_seconds)
    def per_device(x):
        def cond(c): return c[1] < c[2]
        def body(c): return (jnp.sin(c[0]) + 1.0, c[1] + 1, c[2])
        trips = jnp.where(jax.lax.axis_index("batch") == 0, a["loop"], 10)
        y = jax.lax.while_loop(cond, body, (x[0], 0, trips))[0]
        return jax.lax.psum(y, "batch")[None]
    fn = jax.shard_map(per_device, mesh=mesh, in_specs=PartitionSpec("batch"),
                       out_specs=PartitionSpec("batch"), check_vma=False)
    args = (jax.device_put(jnp.arange(n, dtype=jnp.float32),
                           NamedSharding(mesh, PartitionSpec("batch"))),)
elif kind == "plan":
    from apexjax.envs import planner_beta
    from apexjax.planning import icem
    cfg = icem.ICEMConfig(population=a["population"], horizon=a["horizon"],
                          elites=a["elites"], iterations=a["plan_iterations"],
                          beta=planner_beta(a["task"]))
    fn = split_over_devices(
        lambda keys, ps, s: jax.vmap(lambda k, p, x: icem.plan(cfg, k, p, x, task))(keys, ps, s),
        mesh, (True, True, True))
    states = initial_states(B)
    ps = jax.vmap(lambda _: icem.init(cfg, task.action_bounds))(jnp.arange(B))
    keys = jax.random.split(jax.random.key(1), B)
    args = shard_batch((keys, ps, states), mesh)
else:
    def rollout(state, acts):
        final, _ = jax.lax.scan(lambda s, u: (task.step(s, u), None), state, acts)
        return final.data.qpos
    batched = jax.vmap(rollout)
    if kind == "shard_map":
        fn = split_over_devices(batched, mesh, (True, True))
    else:
        fn = batched
    states = initial_states(B)
    lo, hi = task.action_bounds
    acts = jax.random.uniform(jax.random.key(1), (B, T, task.action_dim), minval=lo, maxval=hi)
    args = (states, acts)
    if kind in ("named", "shard_map") and mesh is not None:
        args = jax.device_put(args, NamedSharding(mesh, PartitionSpec("batch")))
jax.block_until_ready(args)
log("inputs_ready")

jfn = fn if kind == "train" else jax.jit(fn)
out = {}
t = time.perf_counter(); lowered = jfn.lower(*args); out["lower_s"] = time.perf_counter() - t
log("lowered", s=out["lower_s"])
t = time.perf_counter(); compiled = lowered.compile(); out["compile_s"] = time.perf_counter() - t
log("compiled", s=out["compile_s"])
out["collectives"], out["collectives_in_while"] = collectives(compiled.as_text())
log("hlo", collectives=out["collectives"], in_while=out["collectives_in_while"])
t = time.perf_counter(); r = jax.block_until_ready(compiled(*args))
out["first_call_s"] = time.perf_counter() - t
log("first_call", s=out["first_call_s"])
if kind == "train":
    args = (r[0],)
t = time.perf_counter(); r = jax.block_until_ready(compiled(*args))
out["run_s"] = time.perf_counter() - t
log("second_call", s=out["run_s"])
leaf = jax.tree_util.tree_leaves(r)[0]
out["finite"] = bool(np.all(np.isfinite(np.asarray(leaf))))
if kind in ("plain", "shard_map", "named"):
    out["qpos"] = np.asarray(r).tolist()  # the parent compares it with one device's
out["total_s"] = time.perf_counter() - T0
print("RESULT" + json.dumps(out), flush=True)
faulthandler.cancel_dump_traceback_later()
"""


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` and its threads (s), from /proc."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> int | None:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _native_stacks(pid: int) -> str | None:
    """A summary of the native stacks of every thread (``gdb``), most common frames first."""
    if not shutil.which("gdb"):
        return None
    try:
        p = subprocess.run(
            ["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 25"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return "gdb timed out"
    # per thread, its innermost frames outside libc/pthread (what it is doing or waiting on)
    tops: dict[str, int] = {}
    for block in re.split(r"\n(?=Thread \d+)", p.stdout):
        names = [
            m.group(1)[:160] for m in re.finditer(r"#\d+\s+(?:0x[0-9a-f]+ in )?([^\s(]+)", block)
        ]
        names = [
            x
            for x in names
            if not re.match(r"_*(GI_|futex|pthread|syscall|clone|start_thread|std::|absl::)", x)
        ]
        if names:
            key = " <- ".join(names[:3])
            tops[key] = tops.get(key, 0) + 1
    keep = [f"{c} thread(s): {f}" for f, c in sorted(tops.items(), key=lambda x: -x[1])]
    return "\n".join(keep[:40])


def run_config(cfg: dict, timeout: float, poll: float = 5.0) -> dict:
    env = dict(os.environ)
    flags = [f"--xla_force_host_platform_device_count={cfg['devices']}", *cfg.get("xla_flags", [])]
    env["XLA_FLAGS"] = " ".join(flags)
    env.update(cfg.get("env", {}))
    child = dict(cfg, stack_after=max(5.0, timeout - 30.0))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(child)],
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        samples = []  # (wall s, cpu s, threads)
        status, stacks = None, None
        while True:
            try:
                proc.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                pass
            wall = time.perf_counter() - t0
            samples.append((round(wall, 1), _cpu_seconds(proc.pid), _threads(proc.pid)))
            if wall > timeout:
                status = "hang"
                stacks = _native_stacks(proc.pid)
                proc.kill()
                proc.wait()
                break
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    row = {k: v for k, v in cfg.items()}
    row["XLA_FLAGS"] = env["XLA_FLAGS"]
    row["wall_s"] = round(wall, 1)
    stages = [ln for ln in stderr.splitlines() if ln.startswith("STAGE")]
    row["last_stage"] = stages[-1] if stages else None
    res = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT")), None)
    if status is None:
        status = "ok" if res and proc.returncode == 0 else "error"
    row["status"] = status
    if res:
        row.update(json.loads(res[len("RESULT") :]))
    if status != "ok":
        row["returncode"] = proc.returncode
        row["stderr_tail"] = stderr[-3000:]
        row["native_stacks"] = stacks
    # CPU use over the last third of the run (a hang with ~0 here is a wait, not work)
    if len(samples) >= 3:
        (w0, c0, _), (w1, c1, th) = samples[-max(2, len(samples) // 3)], samples[-1]
        if c0 is not None and c1 is not None and w1 > w0:
            row["cpu_fraction_last_third"] = round((c1 - c0) / (w1 - w0), 2)
        row["threads"] = th
    if status == "hang" and row.get("cpu_fraction_last_third", 0.0) > 0.05:
        status = row["status"] = "timeout_busy"  # still working (e.g. a slow compile)
    row["warnings"] = sorted(
        {
            ln.strip()[:300]
            for ln in stderr.splitlines()
            if re.search(r"(?i)rendezvous|stuck|termination", ln)
        }
    )[:10]
    return row


def configurations(args) -> list[dict]:
    base = {"task": args.task, "batch": args.batch, "steps": args.steps}
    plan = {
        "kind": "plan",
        "population": args.population,
        "horizon": args.horizon,
        "elites": 2,
        "plan_iterations": 2,
    }
    train = {
        "kind": "train",
        "batch": 4,
        "train_set": [
            "episode_length=3",
            "sgd_steps=2",
            "dataset_capacity=64",
            "planner.population=8",
            "planner.elites=2",
            "planner.horizon=3",
            "planner.iterations=2",
        ],
    }
    synthetic = {"kind": "synthetic", "batch": 16}
    cfgs = {
        "plain-1": {"kind": "plain", "devices": 1},
        "shard_map-2": {"kind": "shard_map", "devices": 2},
        "named-2": {"kind": "named", "devices": 2},
        "shard_map-4": {"kind": "shard_map", "devices": 4},
        "named-4": {"kind": "named", "devices": 4},
        "plan-1": dict(plan, devices=1),
        "plan-2": dict(plan, devices=2),
        "plan-4": dict(plan, devices=4),
        "shard_map-8": {"kind": "shard_map", "devices": 8, "batch": max(8, args.batch)},
        "named-8": {"kind": "named", "devices": 8, "batch": max(8, args.batch)},
        "plan-8": dict(plan, devices=8, batch=max(8, args.batch)),
        "train-1": dict(train, devices=1),
        "train-2": dict(train, devices=2),
        "train-4": dict(train, devices=4),
        "synthetic-1": dict(synthetic, devices=1),
        "synthetic-2": dict(synthetic, devices=2),
        "synthetic-8": dict(synthetic, devices=8),
        "imbalanced-2": {"kind": "imbalanced", "devices": 2, "loop": 1_000_000_000},
        "imbalanced-2-terminate": {
            "kind": "imbalanced",
            "devices": 2,
            "loop": 1_000_000_000,
            "xla_flags": [
                "--xla_cpu_collective_call_warn_stuck_timeout_seconds=2",
                "--xla_cpu_collective_call_terminate_timeout_seconds=5",
            ],
        },
    }
    return [dict(base, name=k, **v) for k, v in cfgs.items()]


def main(argv: list[str] | None = None) -> int:
    from benchmarks._common import environment_info, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="humanoid_standup")
    p.add_argument("--batch", type=int, default=4, help="environments (divisible by devices)")
    p.add_argument("--steps", type=int, default=3, help="control steps per rollout")
    p.add_argument("--population", type=int, default=8, help="planner population (plan)")
    p.add_argument("--horizon", type=int, default=3, help="planner horizon (plan)")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds before 'hang'")
    p.add_argument("--only", default=None, help="comma-separated configuration names")
    p.add_argument("--xla-flag", action="append", default=[], help="extra XLA flag (all configs)")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    cfgs = configurations(args)
    if args.only:
        names = args.only.split(",")
        unknown = set(names) - {c["name"] for c in cfgs}
        if unknown:
            raise SystemExit(f"unknown configurations: {sorted(unknown)}")
        cfgs = [c for c in cfgs if c["name"] in names]
    rows = []
    cmd = "python benchmarks/humanoid_multidevice.py " + " ".join(argv or sys.argv[1:])
    for cfg in cfgs:
        cfg["xla_flags"] = cfg.get("xla_flags", []) + list(args.xla_flag)
        row = run_config(cfg, args.timeout)
        rows.append(row)
        ref = next((r for r in rows if r["kind"] == "plain" and r.get("qpos")), None)
        if row.get("qpos") and ref and len(ref["qpos"]) == len(row["qpos"]):
            import numpy as np

            row["max_abs_diff_vs_1_device"] = float(
                np.max(np.abs(np.asarray(row["qpos"]) - np.asarray(ref["qpos"])))
            )
        msg = f"{row['name']}: {row['status']} in {row['wall_s']:.0f} s"
        if row["status"] == "ok":
            msg += (
                f" (lower {row['lower_s']:.1f} s, compile {row['compile_s']:.1f} s, first call "
                f"{row['first_call_s']:.2f} s, call {row['run_s']:.2f} s; collectives "
                f"{row['collectives']}, {row['collectives_in_while']} inside while loops; "
                f"max |diff| vs 1 device {row.get('max_abs_diff_vs_1_device')})"
            )
        else:
            msg += f"; last stage: {row['last_stage']}; cpu {row.get('cpu_fraction_last_third')}"
        print(msg, flush=True)
        if args.out:
            write_json(
                args.out,
                {
                    "command": cmd.strip(),
                    "environment": environment_info(),
                    "timeout_s": args.timeout,
                    "results": rows,
                },
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Policy vs planner: latency per control step, measured side by side in one run.

Figures (milliseconds per control step, median over repeated calls after a warm-up):

* the iCEM planner, one ``plan`` call for one environment, jitted (what a robot running
  MPC pays every control step), on the task's default budget;
* the distilled policy, jitted JAX, one environment;
* the policy batched over ``batch`` environments (the per-environment share);
* the policy exported to NumPy (:mod:`apexjax.export`), one environment, in a child process
  pinned to one CPU core with one BLAS thread and no JAX imported (a robot computer).

Latency does not depend on the weights, so the policy is a freshly initialised network of
the training default's architecture unless a run directory is given.

Run as ``python -m apexjax.bench.policy --task cartpole_swingup`` (prints the section as
JSON), or through ``apexjax bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from apexjax.bench import Figure, Section

__all__ = ["run", "median_ms"]


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> tuple[float, float]:
    """(median, interquartile range) of ``fn()``'s wall time in ms over ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [times[0]] * 3
    return statistics.median(times), q[2] - q[0]


def _numpy_child(npz: str, obs_dim: int, repeats: int) -> dict[str, float]:
    """Runs in a fresh interpreter: one core, one thread, NumPy only."""
    import numpy as np

    from apexjax.export import load_numpy_policy

    pol = load_numpy_policy(npz)
    obs = np.random.default_rng(0).normal(size=(obs_dim,)).astype(np.float32)
    med, iqr = median_ms(lambda: pol(obs), repeats, warmup=20)
    return {"median_ms": med, "iqr_ms": iqr, "jax_imported": "jax" in sys.modules}


def _numpy_latency(npz: str, obs_dim: int, repeats: int) -> dict[str, Any]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    code = (
        "import json, os, sys\n"
        "if hasattr(os, 'sched_setaffinity'):\n"
        "    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from apexjax.bench.policy import _numpy_child\n"
        f"print(json.dumps(_numpy_child({npz!r}, {obs_dim}, {repeats})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        raise RuntimeError(f"NumPy policy child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(
    task: str,
    *,
    quick: bool = False,
    seed: int = 0,
    run_dir: str | None = None,
    batch: int = 1024,
) -> Section:
    """Measures the section on ``task`` (see the module docstring)."""
    import jax
    import numpy as np

    from apexjax import envs, export, policy
    from apexjax.envs import planner_beta
    from apexjax.planning import icem

    repeats = 20 if quick else 200
    plan_repeats = 5 if quick else 30
    key = jax.random.key(seed)
    t = envs.make(task)
    low, high = t.action_bounds
    obs_dim = int(jax.eval_shape(lambda k: t.observation(t.reset(k)), key).shape[-1])
    if run_dir is not None:
        from apexjax.train import load_checkpoint

        train_config, state = load_checkpoint(run_dir)
        pconfig, pstate = train_config.policy, state.policy
        planner_config = train_config.planner
        source = f"trained run {run_dir}"
    else:
        pconfig = policy.PolicyConfig()
        pstate = policy.init(pconfig, key, obs_dim, low, high)
        planner_config = icem.ICEMConfig(beta=planner_beta(task))
        source = "freshly initialised network (latency does not depend on the weights)"
    if quick:
        planner_config = icem.ICEMConfig(population=16, elites=4, horizon=10, iterations=2)
        batch = min(batch, 64)

    env_state = t.reset(key)
    obs = t.observation(env_state)
    act1 = jax.jit(lambda s, o: policy.act(pconfig, s, o))
    med_pol, iqr_pol = median_ms(lambda: act1(pstate, obs).block_until_ready(), repeats)
    obs_b = jax.vmap(t.observation)(jax.vmap(t.reset)(jax.random.split(key, batch)))
    med_b, _ = median_ms(lambda: act1(pstate, obs_b).block_until_ready(), repeats)

    pstate0 = icem.init(planner_config, t.action_bounds)
    plan1 = jax.jit(lambda k, ps, s: icem.plan(planner_config, k, ps, s, t)[0])
    t0 = time.perf_counter()
    plan1(key, pstate0, env_state).block_until_ready()
    plan_compile_s = time.perf_counter() - t0
    med_plan, iqr_plan = median_ms(
        lambda: plan1(key, pstate0, env_state).block_until_ready(), plan_repeats, warmup=1
    )

    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "policy.npz")
        export.export_policy(npz, pstate, pconfig)
        nres = _numpy_latency(npz, obs_dim, repeats * 5)
        # the exported file must act like the JAX policy, or the latency means nothing
        expect = np.asarray(act1(pstate, obs))
        got = export.load_numpy_policy(npz)(np.asarray(obs))
        np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5)

    budget = icem.simulated_per_step(planner_config)
    plan_name = f"iCEM plan call, 1 env, {budget} sim. steps, jit"
    figures = [
        Figure(
            "planner latency per control step",
            med_plan,
            "ms",
            note=f"IQR {iqr_plan:.3g} ms; compile {plan_compile_s:.1f} s",
        ),
        Figure(
            "policy latency, 1 env, JAX jit",
            med_pol,
            "ms",
            med_plan,
            plan_name,
            med_plan / med_pol,
            note=f"IQR {iqr_pol:.3g} ms",
        ),
        Figure(
            f"policy latency per env, batch {batch}, JAX jit",
            med_b / batch,
            "ms",
            med_plan,
            plan_name,
            med_plan / (med_b / batch),
            note=f"whole batch {med_b:.3g} ms",
        ),
        Figure(
            "policy latency, 1 env, NumPy export, 1 core",
            nres["median_ms"],
            "ms",
            med_plan,
            plan_name,
            med_plan / nres["median_ms"],
            note=f"IQR {nres['iqr_ms']:.3g} ms; no JAX in the process",
        ),
    ]
    details = {
        "task": task,
        "policy_source": source,
        "policy_hidden": list(pconfig.hidden),
        "obs_dim": obs_dim,
        "planner_config": {
            k: getattr(planner_config, k)
            for k in ("population", "elites", "horizon", "iterations", "decay")
        },
        "simulated_steps_per_control_step": budget,
        "batch": batch,
        "repeats": repeats,
        "numpy_child_imported_jax": nres["jax_imported"],
    }
    return Section(f"Policy vs planner latency ({task})", figures, details)


def main(argv: list[str] | None = None) -> int:
    """``python -m apexjax.bench.policy``: prints the section as JSON."""

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--run-dir", default=None)
    args = p.parse_args(argv)
    s = run(args.task, quick=args.quick, run_dir=args.run_dir)
    from apexjax.bench.hardware import bench_result

    cmd = "python -m apexjax.bench.policy " + " ".join(sys.argv[1:] if argv is None else argv)
    print(json.dumps(bench_result([s], cmd), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

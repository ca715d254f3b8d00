"""Compile time, cold and warm, with the persistent compilation cache the CLI enables.

For the planner (closed-loop MPC over ``num_envs`` episodes, the program ``apexjax plan``
compiles) and for the full APEX training step (``make_train_step``, the program ``apexjax
train`` compiles), each measured in a fresh interpreter twice against the same, initially
empty, cache directory: the first ("cold") compiles and stores, the second ("warm") finds
the program in the cache. Times are split into tracing + lowering to StableHLO (Python, not
cached) and XLA compilation (what the cache saves).

Run as ``python -m apexjax.bench.compile --task cartpole_swingup`` or through
``apexjax bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

from apexjax.bench import Figure, Section

__all__ = ["run", "measure_in_child"]

KINDS = ("planner", "train_step")


def _quick_train_overrides() -> dict[str, Any]:
    return dict(num_envs=1, episode_length=4, sgd_steps=2, dataset_capacity=64)


def _child(kind: str, task: str, cache_dir: str, quick: bool) -> dict[str, float]:
    """Runs in a fresh interpreter: enable the cache, trace, lower, compile; return times."""
    t_start = time.perf_counter()
    import jax

    # this child interpreter is the benchmark's own process: it may set JAX's config
    pathlib.Path(cache_dir).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    from apexjax import envs
    from apexjax.envs import planner_beta
    from apexjax.planning import icem

    t_import = time.perf_counter() - t_start
    planner = icem.ICEMConfig(beta=planner_beta(task))
    if quick:
        planner = dataclasses.replace(planner, population=8, elites=2, horizon=4, iterations=1)
    key = jax.random.key(0)
    if kind == "planner":
        from apexjax.planning.mpc import make_mpc_step

        t = envs.make(task)
        n = 1 if quick else 4
        states = jax.vmap(t.reset)(jax.random.split(key, n))
        ps = jax.tree.map(
            lambda x: jax.numpy.broadcast_to(x, (n, *x.shape)), icem.init(planner, t.action_bounds)
        )
        carry = (states, ps, jax.random.split(key, n))
        step = make_mpc_step(planner, t, None)
        length = 2 if quick else 10

        def chunk(c):
            return jax.lax.scan(step, c, None, length=length)

        fn, args = jax.jit(jax.vmap(chunk)), (carry,)
    elif kind == "train_step":
        from apexjax.loop import TrainConfig, build_task, init_train_state, make_train_step

        over = _quick_train_overrides() if quick else {}
        config = TrainConfig(task=task, planner=planner, **over)
        if quick:
            from apexjax.policy import PolicyConfig

            config = dataclasses.replace(config, policy=PolicyConfig(hidden=(8,), batch_size=8))
        t = build_task(config)
        fn, args = make_train_step(config, t), (init_train_state(config, t),)
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {"import_s": t_import, "lower_s": t1 - t0, "compile_s": t2 - t1, "total_s": t2 - t0}


def measure_in_child(
    kind: str, task: str, cache_dir: str, *, quick: bool = False, timeout: float = 1800
) -> dict[str, float]:
    """One fresh interpreter's trace/lower/compile times for ``kind`` (see :data:`KINDS`)."""
    code = (
        "import json\n"
        "from apexjax.bench.compile import _child\n"
        f"print(json.dumps(_child({kind!r}, {task!r}, {cache_dir!r}, {quick!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
    if out.returncode != 0:
        raise RuntimeError(f"compile child ({kind}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(task: str, *, quick: bool = False, seed: int = 0) -> Section:
    """Cold and warm compile of the planner and the training step on ``task``."""
    del seed  # compile time does not depend on it
    figures: list[Figure] = []
    details: dict[str, Any] = {
        "task": task,
        "quick": quick,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    for kind in KINDS:
        with tempfile.TemporaryDirectory() as cache:
            cold = measure_in_child(kind, task, cache, quick=quick)
            entries = len(os.listdir(cache))
            warm = measure_in_child(kind, task, cache, quick=quick)
        details[kind] = {"cold": cold, "warm": warm, "cache_entries": entries}
        label = "planner (MPC chunk)" if kind == "planner" else "APEX training step"
        figures.append(
            Figure(
                f"{label} XLA compile, warm cache",
                warm["compile_s"],
                "s",
                cold["compile_s"],
                "cold (empty cache)",
                cold["compile_s"] / max(warm["compile_s"], 1e-9),
                note=f"{entries} cache entries",
            )
        )
        figures.append(
            Figure(
                f"{label} trace+lower+compile, warm cache",
                warm["total_s"],
                "s",
                cold["total_s"],
                "cold (empty cache)",
                cold["total_s"] / max(warm["total_s"], 1e-9),
                note=f"trace+lower {warm['lower_s']:.1f} s is not cached",
            )
        )
    return Section(f"Compile time, cold vs warm persistent cache ({task})", figures, details)


def main(argv: list[str] | None = None) -> int:
    """``python -m apexjax.bench.compile``: prints the section as JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    from apexjax.bench.hardware import bench_result

    cmd = "python -m apexjax.bench.compile " + " ".join(sys.argv[1:] if argv is None else argv)
    print(json.dumps(bench_result([run(args.task, quick=args.quick)], cmd), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

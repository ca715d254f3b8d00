"""benchmarks/native_backend.py's ``overhead`` section: its no-physics plan keeps every host
call and hands back real results, so what it times is the plan minus MuJoCo's work."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

import apexjax.envs as envs
from apexjax.planning import icem

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ are scripts beside the package

from benchmarks import native_backend  # noqa: E402


def test_no_physics_plan_returns_the_real_plans_results_without_calling_mujoco():
    cfg = icem.ICEMConfig(population=8, elites=2, iterations=2, horizon=5)
    keys = jax.random.split(jax.random.key(0), 2)
    actions, traces = [], []
    for stub in (False, True):
        task = envs.make("pendulum_swingup", backend="native")
        if stub:
            native_backend._no_physics(task.native)
        states = jax.jit(jax.vmap(task.reset))(keys)
        ps = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (2, *x.shape)), icem.init(cfg, task.action_bounds)
        )
        plan = jax.jit(jax.vmap(lambda k, p, s, t=task: icem.plan(cfg, k, p, s, t)[0]))
        actions.append(np.asarray(plan(keys, ps, states)))
        task.native.trace = []
        actions.append(np.asarray(plan(keys, ps, states)))
        traces.append(len(task.native.trace))
        task.native.trace = None
    np.testing.assert_array_equal(actions[0], actions[2])  # first calls: real physics
    np.testing.assert_array_equal(actions[1], actions[3])  # then the stub's cached results
    assert traces[0] == cfg.iterations and traces[1] == 0  # the stub calls no MuJoCo

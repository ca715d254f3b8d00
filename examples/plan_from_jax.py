"""The iCEM planner from your own JAX code: a closed MPC loop inside one ``jax.jit``.

A task, the planner's state from ``icem.init``, and ``icem.plan`` called at every control
step of a ``jax.lax.scan``: the loop, the planning and the physics compile into one
program (``apexjax.planning.mpc.run_mpc`` is this loop with more options).

    python examples/plan_from_jax.py --task cartpole_swingup --population 40

prints the episode's return (minus the summed cost) and whether the task succeeded.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

from apexjax import envs
from apexjax.planning import icem


def make_episode(task: envs.Task, config: icem.ICEMConfig):
    """``episode(key) -> (return, success, actions [T, A])``, jitted."""

    @jax.jit
    def episode(key: jax.Array):
        k_reset, k_plan = jax.random.split(key)
        state = task.reset(k_reset)
        planner = icem.init(config, task.action_bounds)

        def step(carry, k):
            s, p = carry
            # plan from s (warm-started from the previous step's plan), act, step
            action, p, _info = icem.plan(config, k, p, s, task)
            s2 = task.step(s, action)
            return (s2, p), (action, task.cost(s, action, s2))

        (final, _), (actions, costs) = jax.lax.scan(
            step, (state, planner), jax.random.split(k_plan, task.episode_length)
        )
        success = task.success(final) if task.has_success else jnp.bool_(False)
        return -jnp.sum(costs), success, actions

    return episode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "mjx"))
    p.add_argument("--steps", type=int, default=0, help="control steps (0: the task's own)")
    p.add_argument("--population", type=int, default=40)
    p.add_argument("--elites", type=int, default=10)
    p.add_argument("--horizon", type=int, default=30)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    options = {"episode_length": args.steps} if args.steps else {}
    task = envs.make(args.task, backend=args.backend, **options)
    config = icem.ICEMConfig(
        population=args.population,
        elites=args.elites,
        horizon=args.horizon,
        iterations=args.iterations,
        beta=envs.planner_beta(args.task),  # the task's colored-noise exponent
    )
    episode = make_episode(task, config)
    key = jax.random.PRNGKey(args.seed)
    t0 = time.perf_counter()
    compiled = episode.lower(key).compile()
    t1 = time.perf_counter()
    ret, success, actions = jax.block_until_ready(compiled(key))
    t2 = time.perf_counter()
    print(
        f"{args.task} ({getattr(task, 'backend', 'jax')} physics), iCEM N={config.population} "
        f"K={config.elites} h={config.horizon} I={config.iterations}: return {float(ret):.3f} "
        f"over {actions.shape[0]} steps, success {bool(success)}"
    )
    print(f"compile {t1 - t0:.1f} s, episode {t2 - t1:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

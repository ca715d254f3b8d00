"""Policy learning vs reinforcement learning: APEX against Brax PPO on the same MJX task.

Both learn a policy for the same apexjax task (the same MJX model, cost and episode length;
PPO's reward is the negated cost and its [-1, 1] actions are scaled to the task's bounds),
on the same machine, one seed after the other; PPO in a child interpreter of its own
(:func:`run_ppo`), because Brax's PPO calls ``jax.device_put_replicated``, which JAX 0.10
removed: that child, and only it, provides the function for Brax, so this module never
changes JAX in the caller's process. Both are evaluated the
same way: the mean return of the deterministic policy alone over ``eval_episodes`` fresh
episodes. Reported per method: the wall-clock (compile included, since a user waits for it)
and the simulated control steps until that evaluation first reaches ``threshold``, for
each seed; a seed that never reaches it within its budget counts as not reached.

Simulated steps: for APEX every step the planner imagines plus every step executed in the
environment (``simulated_steps`` of the training step); for PPO the environment steps.

Run as ``python -m apexjax.bench.learning --task cartpole_swingup`` or through
``apexjax bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import statistics
import sys
import time
from typing import Any

from apexjax.bench import Figure, Section

__all__ = ["APEX_CONFIGS", "PPO_CONFIGS", "THRESHOLDS", "run", "run_apex", "run_ppo", "to_brax"]

log = logging.getLogger(__name__)

# Return a learner must reach (cost is "lower is better", return = -sum of costs). Cart-pole:
# the untrained policy scores about -160 and the iCEM expert about -25; -50 is a swing-up
# that stays up for most of the episode.
THRESHOLDS = {"cartpole_swingup": -50.0, "pendulum_swingup": -40.0}

# APEX at the CPU budget of the committed cart-pole ablation (experiments/results).
APEX_CONFIGS: dict[str, dict[str, Any]] = {
    "cartpole_swingup": dict(
        num_envs=2,
        sgd_steps=300,
        planner=dict(population=16, elites=4, horizon=20, beta=0.25),
    ),
    "pendulum_swingup": dict(
        num_envs=2,
        sgd_steps=200,
        planner=dict(population=16, elites=4, horizon=20, beta=2.0),
    ),
}

# PPO settings in the spirit of MuJoCo Playground's cart-pole swing-up, scaled to a CPU;
# the tasks differ only in their step budget (one evaluation per million steps).
_PPO_COMMON: dict[str, Any] = dict(
    num_envs=256,
    batch_size=256,
    num_minibatches=8,
    unroll_length=20,
    num_updates_per_batch=4,
    discounting=0.99,
    learning_rate=1e-3,
    entropy_cost=1e-2,
    reward_scaling=10.0,
    normalize_observations=True,
)
PPO_CONFIGS: dict[str, dict[str, Any]] = {
    "cartpole_swingup": dict(_PPO_COMMON, num_timesteps=30_000_000, num_evals=31),
    "pendulum_swingup": dict(_PPO_COMMON, num_timesteps=10_000_000, num_evals=21),
}


def to_brax(task: Any) -> Any:
    """An apexjax task as a ``brax.envs.Env`` (reward = -cost, actions in [-1, 1] scaled to
    the task's bounds, never done: episodes end by the training wrapper's time limit)."""
    import jax.numpy as jnp
    from brax.envs.base import Env, State

    low = jnp.asarray(task.action_low, jnp.float32)
    high = jnp.asarray(task.action_high, jnp.float32)

    class _TaskEnv(Env):
        def reset(self, rng):
            s = task.reset(rng)
            z = jnp.zeros((), jnp.float32)
            return State(s, task.observation(s), z, z, {}, {})

        def step(self, state, action):
            a = low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
            s2 = task.step(state.pipeline_state, a)
            reward = -task.cost(state.pipeline_state, a, s2)
            return state.replace(pipeline_state=s2, obs=task.observation(s2), reward=reward)

        @property
        def observation_size(self) -> int:
            return task.observation_dim

        @property
        def action_size(self) -> int:
            return task.action_dim

        @property
        def backend(self) -> str:
            return "mjx"

    return _TaskEnv()


def _provide_device_put_replicated() -> None:
    """In the PPO child interpreter only (:func:`_ppo_child_main`): Brax's PPO (0.14.x, the
    newest) calls ``jax.device_put_replicated``, which JAX removed in 0.10; give that process
    the same function (a leading device axis, one copy per device) where JAX lacks it."""
    import jax
    import jax.numpy as jnp

    if hasattr(jax, "device_put_replicated"):
        return

    def device_put_replicated(x: Any, devices: list[Any]) -> Any:
        # a leading device axis sharded over a mesh named as Brax's pmap axis ('i' in
        # brax.training.agents.ppo.train), so its pmapped steps see one mesh throughout
        from brax.training.agents.ppo import train as ppo_train

        axis = getattr(ppo_train, "_PMAP_AXIS_NAME", "i")
        mesh = jax.sharding.Mesh(devices, (axis,))
        spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
        return jax.tree.map(lambda a: jax.device_put(jnp.stack([a] * len(devices)), spec), x)

    jax.device_put_replicated = device_put_replicated


def _crossing(curve: list[tuple[float, float, float]], threshold: float) -> dict[str, Any]:
    """First (seconds, sim steps) where the evaluated return reaches ``threshold``."""
    for seconds, steps, ret in curve:
        if ret >= threshold:
            return {"reached": True, "seconds": seconds, "simulated_steps": steps}
    return {"reached": False, "seconds": None, "simulated_steps": None}


def _policy_eval(task: Any, pconfig: Any, episodes: int) -> Any:
    """Jitted ``(policy_state, key) -> mean return`` of the policy alone (own rollout code,
    independent of the training loop's)."""
    import jax
    import jax.numpy as jnp

    from apexjax import policy

    def episode(pol, key):
        def step(s, _):
            a = policy.act(pconfig, pol, task.observation(s))
            s2 = task.step(s, a)
            return s2, task.cost(s, a, s2)

        _, costs = jax.lax.scan(step, task.reset(key), None, length=task.episode_length)
        return -jnp.sum(costs)

    return jax.jit(
        lambda pol, key: jnp.mean(
            jax.vmap(episode, (None, 0))(pol, jax.random.split(key, episodes))
        )
    )


def run_apex(
    task_name: str,
    seeds: list[int],
    threshold: float,
    *,
    max_iterations: int = 12,
    max_seconds: float = 900.0,
    eval_episodes: int = 16,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """APEX until the policy alone reaches ``threshold`` (or ``max_iterations`` or the first
    evaluation after ``max_seconds``), per seed.

    The training step is compiled once and reused for every seed (the seed lives in the
    state); each seed's wall-clock includes that compile."""
    import jax

    from apexjax.driver import fit
    from apexjax.loop import TrainConfig, build_task, init_train_state
    from apexjax.planning.icem import ICEMConfig

    kw = dict(APEX_CONFIGS.get(task_name, {}))
    kw.update(overrides or {})
    planner = ICEMConfig(**kw.pop("planner", {}))
    config = TrainConfig(task=task_name, planner=planner, iterations=max_iterations, **kw)
    task = build_task(config)
    # evaluated on the task at its own episode length, as PPO is (training episodes may be
    # shorter when the config says so)
    from apexjax import envs

    evaluate = _policy_eval(envs.make(task_name), config.policy, eval_episodes)
    t0 = time.perf_counter()
    float(evaluate(init_train_state(config, task).policy, jax.random.key(0)))
    compile_s = time.perf_counter() - t0  # the evaluation's; the step's is added below
    step_compile_s = 0.0

    def run_seed(seed: int) -> dict[str, Any]:
        eval_key = jax.random.key(10_000 + seed)
        curve: list[tuple[float, float, float]] = []
        done = {"wall": 0.0, "sims": 0.0, "compiling": 0.0}

        def after(it: int, row: dict[str, Any], state: Any) -> bool:
            t1 = time.perf_counter()
            ret = float(evaluate(state.policy, eval_key))
            # each seed's wall-clock includes the one compile of the step and evaluation
            done["wall"] += row["seconds"] + time.perf_counter() - t1
            done["sims"] += float(row["simulated_steps"])
            wall = compile_s + step_compile_s + done["wall"]
            curve.append((wall, done["sims"], ret))
            log.info(
                "apex seed %d: %.1f s, %.3g sim steps, policy return %.1f",
                seed,
                wall,
                done["sims"],
                ret,
            )
            return ret >= threshold or wall > max_seconds

        def stage(name: str) -> None:
            nonlocal step_compile_s
            if name.startswith("compiling"):
                done["compiling"] = time.perf_counter()
            elif name == "iteration 1" and done["compiling"] and not step_compile_s:
                step_compile_s = time.perf_counter() - done["compiling"]  # the first seed's

        state = init_train_state(dataclasses.replace(config, seed=seed), task)
        fit(config, state, task=task, callback=after, on_stage=stage)  # the library's loop
        return {"seed": seed, "curve": curve, **_crossing(curve, threshold)}

    per_seed = [run_seed(seed) for seed in seeds]
    compile_s += step_compile_s
    return {"compile_s": compile_s, "config": _jsonable(config), "per_seed": per_seed}


class _StopTrainingError(Exception):
    """Raised from PPO's progress callback to end a run early (threshold met or time up)."""


def run_ppo(
    task_name: str,
    seeds: list[int],
    threshold: float,
    *,
    eval_episodes: int = 16,
    max_seconds: float = 900.0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Brax PPO on the same task, per seed, with the same threshold and evaluation size,
    in a child interpreter (``python -m apexjax.bench.learning --ppo-child``; see the
    module docstring), which inherits the environment (``XLA_FLAGS`` included).

    A seed stops at its first evaluation at or above ``threshold``, or at the first
    evaluation after ``max_seconds`` (then it counts as not reached).

    Raises:
      RuntimeError: the child failed; the message ends with its last lines of output.
    """
    import subprocess

    spec = dict(
        task_name=task_name,
        seeds=list(seeds),
        threshold=threshold,
        eval_episodes=eval_episodes,
        max_seconds=max_seconds,
        overrides=overrides or {},
    )
    cmd = [sys.executable, "-m", "apexjax.bench.learning", "--ppo-child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stderr.splitlines():
        log.info("ppo child: %s", line)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"the PPO baseline failed (exit status {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_ppo_here(
    task_name: str,
    seeds: list[int],
    threshold: float,
    *,
    eval_episodes: int = 16,
    max_seconds: float = 900.0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`run_ppo`'s work, in the child interpreter."""
    from apexjax import envs

    try:
        from brax.training.agents.ppo import train as ppo
    except ImportError as e:  # brax is a core dependency; say what is missing if it is not
        raise RuntimeError(f"the PPO baseline needs brax ({e})") from None
    task = envs.make(task_name)
    kw = dict(PPO_CONFIGS.get(task_name, PPO_CONFIGS["cartpole_swingup"]))
    kw.update(overrides or {})
    per_seed = []
    for seed in seeds:
        curve: list[tuple[float, float, float]] = []
        t0 = time.perf_counter()

        def progress(
            num_steps: int,
            metrics: dict[str, Any],
            t0: float = t0,
            seed: int = seed,
            curve: list = curve,
        ) -> None:
            ret = float(metrics["eval/episode_reward"])
            curve.append((time.perf_counter() - t0, float(num_steps), ret))
            log.info(
                "ppo seed %d: %.1f s, %.3g env steps, return %.1f",
                seed,
                curve[-1][0],
                num_steps,
                ret,
            )
            if ret >= threshold or curve[-1][0] > max_seconds:
                raise _StopTrainingError

        with contextlib.suppress(_StopTrainingError):
            ppo.train(
                environment=to_brax(task),
                episode_length=task.episode_length,
                action_repeat=1,
                num_eval_envs=eval_episodes,
                deterministic_eval=True,
                seed=seed,
                progress_fn=progress,
                **kw,
            )
        per_seed.append(
            {
                "seed": seed,
                "curve": curve,
                **_crossing(curve, threshold),
                "wall_s": time.perf_counter() - t0,
            }
        )
    return {"config": kw, "per_seed": per_seed}


def _jsonable(config: Any) -> dict[str, Any]:
    from apexjax.configs import to_dict

    return to_dict(config)


def _summary(per_seed: list[dict[str, Any]], key: str) -> tuple[float, bool, str]:
    """(mean over seeds, is it a lower bound, note). A seed that never reached the threshold
    counts with the last value it got to (its run stopped there), so the mean is then a lower
    bound on the true mean."""
    vals, censored = [], []
    for s in per_seed:
        if s["reached"]:
            vals.append(float(s[key]))
        else:
            last = s["curve"][-1] if s["curve"] else (0.0, 0.0, float("nan"))
            vals.append(float(last[0] if key == "seconds" else last[1]))
            censored.append(f"seed {s['seed']} not reached (stopped at return {last[2]:.1f})")
    note = f"{len(per_seed) - len(censored)}/{len(per_seed)} seeds reached"
    if len(vals) > 1:
        note += f", std {statistics.pstdev(vals):.3g}"
    if censored:
        note += "; lower bound: " + ", ".join(censored)
    return statistics.mean(vals), bool(censored), note


def figures(details: dict[str, Any]) -> list[Figure]:
    """The section's figures from its measured ``details`` (per-seed curves)."""
    threshold = details["threshold"]
    out = []
    for key, unit, name, what in (
        ("seconds", "s", "wall-clock", "compile included"),
        (
            "simulated_steps",
            "steps",
            "simulated steps",
            "APEX: planner imagination + executed steps; PPO: env steps",
        ),
    ):
        a, a_low, a_note = _summary(details["apex"]["per_seed"], key)
        p, p_low, p_note = _summary(details["ppo"]["per_seed"], key)
        ratio = p / a if a > 0 else None
        if ratio is not None and a_low:
            ratio = None  # APEX's own figure is only a bound: no ratio
        bound = " (PPO/APEX is a lower bound)" if (p_low and not a_low) else ""
        out.append(
            Figure(
                f"{name} to return {threshold:g}",
                a,
                unit,
                p,
                "Brax PPO",
                ratio,
                note=f"APEX {a_note}; PPO {p_note}; {what}{bound}",
            )
        )
    return out


def run(
    task: str,
    *,
    quick: bool = False,
    seed: int = 0,
    seeds: int = 3,
    threshold: float | None = None,
) -> Section:
    """APEX vs PPO to ``threshold`` (default :data:`THRESHOLDS`) on ``task``, ``seeds`` seeds."""
    if threshold is None:
        if task not in THRESHOLDS:
            raise ValueError(
                f"learning: no default threshold for {task!r}; pass threshold "
                f"(defaults exist for {sorted(THRESHOLDS)})"
            )
        threshold = THRESHOLDS[task]
    seed_list = [seed + i for i in range(1 if quick else seeds)]
    apex_over: dict[str, Any] = {}
    ppo_over: dict[str, Any] = {}
    max_it = 12
    if quick:
        apex_over = dict(
            num_envs=1,
            episode_length=10,
            sgd_steps=5,
            planner=dict(population=8, elites=2, horizon=4, iterations=1),
        )
        ppo_over = dict(
            num_timesteps=20_000, num_envs=16, batch_size=16, num_minibatches=2, num_evals=2
        )
        max_it = 1
    apex = run_apex(task, seed_list, threshold, max_iterations=max_it, overrides=apex_over)
    ppo = run_ppo(task, seed_list, threshold, overrides=ppo_over)
    details = {"task": task, "threshold": threshold, "seeds": seed_list, "apex": apex, "ppo": ppo}
    return Section(f"APEX vs PPO to a return threshold ({task})", figures(details), details)


def _ppo_child_main(spec_json: str) -> int:
    """The PPO child (:func:`run_ppo`): runs the spec, prints the result as one JSON line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    _provide_device_put_replicated()  # this interpreter is the benchmark's own
    spec = json.loads(spec_json)
    out = _run_ppo_here(spec.pop("task_name"), spec.pop("seeds"), spec.pop("threshold"), **spec)
    print(json.dumps(out, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m apexjax.bench.learning``: prints the section as JSON."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["--ppo-child"] and len(args_list) == 2:
        return _ppo_child_main(args_list[1])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threshold", type=float, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    s = run(args.task, quick=args.quick, seeds=args.seeds, threshold=args.threshold)
    from apexjax.bench.hardware import bench_result

    cmd = "python -m apexjax.bench.learning " + " ".join(sys.argv[1:] if argv is None else argv)
    print(json.dumps(bench_result([s], cmd), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

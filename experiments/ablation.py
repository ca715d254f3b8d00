"""Ablation of APEX's parts: BC only, DAgger only, fixed-λ guidance, APEX (adaptive λ).

Every method trains from the same seeds with the same planner and the same number of
planner calls per iteration (BC only, which has no DAgger phase, runs twice the expert
episodes instead), and is judged at the end on fresh episodes: the policy alone against
the expert (the planner the method trains with, guided where the method guides it).

Seeds run side by side in ONE jitted call (``jax.vmap`` over the training states), so a
3-seed run costs about one seed's wall-clock on an accelerator.

    python experiments/ablation.py --task cartpole_swingup --methods bc,dagger,fixed,apex \\
        --seeds 0,1,2 --iterations 8 --out experiments/results/cartpole_swingup.json

Per method the JSON holds the config, per-iteration metrics for every seed, the final
evaluation per seed, compile and run wall-clock, and simulated control steps.
``experiments/report.py`` turns one or more of these files into the table and the plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from apexjax.commands.train import build_config
from apexjax.configs import ConfigError, to_dict
from apexjax.guidance import GuidanceConfig
from apexjax.loop import (
    TrainConfig,
    build_task,
    init_train_state,
    make_evaluate,
    make_train_step,
    place_state,
)
from benchmarks._common import environment_info, write_json

METHODS = ("bc", "dagger", "fixed", "apex")


def method_config(base: TrainConfig, method: str, weight: float) -> TrainConfig:
    """``base`` with the settings that define ``method``."""
    r = dataclasses.replace
    if method == "bc":  # expert data only; the DAgger phase's budget goes to more expert episodes
        return r(
            base,
            dagger=False,
            num_envs=2 * base.num_envs,
            policy_candidates=0,
            guidance=GuidanceConfig("off"),
        )
    if method == "dagger":
        return r(base, policy_candidates=0, guidance=GuidanceConfig("off"))
    if method == "fixed":
        return r(base, policy_candidates=1, guidance=GuidanceConfig("fixed", weight))
    if method == "apex":
        return r(base, policy_candidates=1, guidance=GuidanceConfig("progress", weight))
    raise ConfigError(f"--methods: unknown method {method!r}; allowed: {', '.join(METHODS)}")


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def run_method(
    config: TrainConfig, seeds: list[int], eval_episodes: int, log, time_budget: float
) -> dict:
    task = build_task(config)
    states = _stack([init_train_state(dataclasses.replace(config, seed=s), task) for s in seeds])
    states = place_state(config, states)
    step = jax.jit(jax.vmap(make_train_step(config, task)))
    evaluate = make_evaluate(config, task, eval_episodes)
    eval_all = jax.jit(jax.vmap(evaluate))
    eval_keys = place_state(config, jnp.stack([jax.random.PRNGKey(10_000 + s) for s in seeds]))

    t0 = time.perf_counter()
    compiled = step.lower(states).compile()
    eval_c = eval_all.lower(states.policy, eval_keys, states.guidance_weight).compile()
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    initial = jax.device_get(eval_c(states.policy, eval_keys, states.guidance_weight))
    history: list[dict[str, list[float]]] = []
    run_s = 0.0
    for it in range(config.iterations):
        if history and run_s + history[-1]["seconds"] > time_budget:
            log(f"  time budget {time_budget:.0f} s reached after {it} iterations")
            break
        t1 = time.perf_counter()
        states, metrics = compiled(states)
        metrics = {k: np.asarray(v).tolist() for k, v in jax.device_get(metrics).items()}
        dt = time.perf_counter() - t1
        run_s += dt
        metrics["seconds"] = dt
        history.append(metrics)
        log(
            f"  iter {it + 1}/{config.iterations}: expert {np.mean(metrics['expert_return']):.1f} "
            f"policy {np.mean(metrics['policy_return']):.1f} "
            f"lambda {np.mean(metrics['lambda_mean']):.3f} ({dt:.1f} s)"
        )
    t1 = time.perf_counter()
    final = jax.device_get(eval_c(states.policy, eval_keys, states.guidance_weight))
    eval_s = time.perf_counter() - t1
    sims = float(np.sum([np.sum(m["simulated_steps"]) for m in history]))
    return {
        "compile_s": compile_s,
        "train_s": run_s,
        "eval_s": eval_s,
        "wall_s": time.perf_counter() - t0,
        "simulated_steps_all_seeds": sims,
        "iterations_done": len(history),
        "initial_eval": {k: np.asarray(v).tolist() for k, v in initial.items()},
        "final_eval": {k: np.asarray(v).tolist() for k, v in final.items()},
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--num-envs", type=int, default=8, help="episodes per phase per seed")
    p.add_argument("--episode-length", type=int, default=0, help="0: the task's own")
    p.add_argument("--population", type=int, default=40)
    p.add_argument("--horizon", type=int, default=30)
    p.add_argument("--sgd-steps", type=int, default=500)
    p.add_argument("--weight", type=float, default=1.0, help="λ0 of fixed and apex")
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument(
        "--time-budget",
        type=float,
        default=float("inf"),
        help="seconds of training per method (compile excluded); stops between iterations",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="as in apexjax train: TrainConfig field, or planner./policy./guidance. FIELD",
    )
    p.add_argument("--out", type=pathlib.Path, required=True)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    base = build_config(
        args.task,
        [
            f"iterations={args.iterations}",
            f"num_envs={args.num_envs}",
            f"episode_length={args.episode_length}",
            f"sgd_steps={args.sgd_steps}",
            f"planner.population={args.population}",
            f"planner.horizon={args.horizon}",
            *args.set,
        ],
    )
    configs = {m: method_config(base, m, args.weight) for m in methods}  # all errors first

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    out: dict = {
        "command": "python experiments/ablation.py " + " ".join(argv or sys.argv[1:]),
        "environment": environment_info(),
        "task": args.task,
        "seeds": seeds,
        "methods": {},
    }
    for m, cfg in configs.items():
        log(f"{args.task} / {m}: compiling ({len(seeds)} seeds vmapped)")
        res = run_method(cfg, seeds, args.eval_episodes, log, args.time_budget)
        res["config"] = to_dict(cfg)
        out["methods"][m] = res
        fe = res["final_eval"]
        log(
            f"{args.task} / {m}: policy {np.mean(fe['policy_return']):.1f} vs expert "
            f"{np.mean(fe['expert_return']):.1f}; compile {res['compile_s']:.0f} s, "
            f"train {res['train_s']:.0f} s"
        )
        write_json(args.out, out)  # after each method, so a cut run keeps what finished
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

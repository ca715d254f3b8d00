"""The paper's comparison on one task: planner alone (iCEM, plain CEM at equal budget) and
policies distilled from it (BC only, DAgger only, fixed-λ guidance, APEX adaptive λ with
the default weight rule, and APEX with each other per-iteration rule: ``progress``, ``gap``,
``progress_gap``; see :mod:`apexjax.guidance`).

Training methods train from the same seeds with the same planner and the same number of
planner calls per iteration (BC only, which has no DAgger phase, runs twice the expert
episodes instead), and are judged at the end on fresh episodes: the policy alone against
the expert (the planner the method trains with, guided where the method guides it).
Planner-only methods train nothing: ``icem`` is the unguided iCEM expert at the training
budget, ``cem`` plain CEM (:func:`apexjax.presets.cem_at_equal_budget`: white noise, no
memory, a population that simulates as many steps per control step, within 5 %). Every
method is evaluated by the same :func:`apexjax.loop.make_evaluate` on the same keys, so the
experts of all methods start from the same states.

Seeds run side by side in ONE jitted call (``jax.vmap`` over the training states), so a
3-seed run costs about one seed's wall-clock on an accelerator.

    python experiments/ablation.py --task cartpole_swingup --preset cpu --seeds 0,1,2 \\
        --out experiments/results/cartpole_swingup.json

``--preset NAME`` (:mod:`apexjax.presets`) sets the budget; ``--iterations``,
``--num-envs``, ``--population``, ``--horizon``, ``--sgd-steps``, ``--episode-length`` and
``--set`` apply on top of it (without a preset they start from this script's own defaults).
Per method the JSON holds the config, per-iteration metrics for every seed, the final
evaluation per seed (planner-only methods: the expert's only), compile, training and
evaluation wall-clock, and simulated control steps of training and of evaluation; at the
top, the preset and the run's reduction of simulated steps against the task's ``paper``
preset. ``experiments/report.py`` turns one or more of these files into the table and plots.
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

from apexjax import presets
from apexjax.commands.train import request_host_devices
from apexjax.configs import ConfigError, to_dict
from apexjax.driver import fit, init_states
from apexjax.guidance import GuidanceConfig
from apexjax.loop import (
    TrainConfig,
    build_task,
    make_evaluate,
    place_state,
)
from apexjax.planning import icem
from apexjax.presets import train_config
from benchmarks._common import environment_info, write_json

METHODS = ("icem", "cem", "bc", "dagger", "fixed", "apex", "progress", "gap", "progress_gap")
PLANNER_ONLY = ("icem", "cem")
# Budget without --preset (the flags of the committed cart-pole ablation override these).
DEFAULTS = {
    "iterations": 8,
    "num_envs": 8,
    "planner.population": 40,
    "planner.horizon": 30,
    "sgd_steps": 500,
}


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
    if method in PLANNER_ONLY:
        # Nothing is trained: the unguided planner alone; the dataset is never filled.
        planner = base.planner if method == "icem" else presets.cem_at_equal_budget(base.planner)
        return r(
            base,
            planner=planner,
            policy_candidates=0,
            guidance=GuidanceConfig("off"),
            dataset_capacity=1,
        )
    if method == "dagger":
        return r(base, policy_candidates=0, guidance=GuidanceConfig("off"))
    if method == "fixed":
        return r(base, policy_candidates=1, guidance=GuidanceConfig("fixed", weight))
    if method == "apex":  # the default weight rule
        return r(base, policy_candidates=1, guidance=GuidanceConfig(weight=weight))
    if method in ("progress", "gap", "progress_gap"):  # APEX with another per-iteration weight
        return r(base, policy_candidates=1, guidance=GuidanceConfig(method, weight))
    raise ConfigError(f"--methods: unknown method {method!r}; allowed: {', '.join(METHODS)}")


def _evaluator(config: TrainConfig, task, states, seeds: list[int], eval_episodes: int):
    """The compiled evaluation of every seed at once, and its keys: the same keys for every
    method, so all methods' experts start from the same states."""
    evaluate = make_evaluate(config, task, eval_episodes)
    eval_all = jax.jit(jax.vmap(evaluate))
    eval_keys = place_state(config, jnp.stack([jax.random.PRNGKey(10_000 + s) for s in seeds]))
    compiled = eval_all.lower(states.policy, eval_keys, states.guidance_weight).compile()
    return lambda st: compiled(st.policy, eval_keys, st.guidance_weight)


def _host(metrics) -> dict[str, list[float]]:
    return {k: np.asarray(v).tolist() for k, v in jax.device_get(metrics).items()}


def _budget_fields(config: TrainConfig, task, seeds: list[int], eval_episodes: int) -> dict:
    per_step = icem.simulated_per_step(config.expert_planner)
    return {
        "planner_simulated_per_step": per_step,
        "eval_episodes": eval_episodes,
        "eval_simulated_steps_all_seeds": float(
            len(seeds) * eval_episodes * task.episode_length * per_step
        ),
    }


def run_planner_only(config: TrainConfig, seeds: list[int], eval_episodes: int, log) -> dict:
    """The planner alone (no training) on the evaluation episodes of every seed.

    Same schema as :func:`run_method`: no history, ``final_eval`` holds the expert's return
    (and success); ``initial_eval`` also holds the untrained policy's (the R_0 of the others).
    """
    task = build_task(config)
    states = init_states(config, task, seeds)
    t0 = time.perf_counter()
    evaluate = _evaluator(config, task, states, seeds, eval_episodes)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = _host(evaluate(states))
    eval_s = time.perf_counter() - t0
    log(f"  expert alone: {np.mean(ev['expert_return']):.1f} ({eval_s:.1f} s)")
    return {
        "planner_only": True,
        "compile_s": compile_s,
        "train_s": 0.0,
        "eval_s": eval_s,
        "wall_s": eval_s,
        "simulated_steps_all_seeds": 0.0,
        **_budget_fields(config, task, seeds, eval_episodes),
        "iterations_done": 0,
        "initial_eval": ev,
        "final_eval": {k: v for k, v in ev.items() if k.startswith("expert_")},
        "history": [],
    }


def run_method(
    config: TrainConfig, seeds: list[int], eval_episodes: int, log, time_budget: float
) -> dict:
    task = build_task(config)
    states = init_states(config, task, seeds)

    t0 = time.perf_counter()
    evaluate = _evaluator(config, task, states, seeds, eval_episodes)
    eval_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    initial = _host(evaluate(states))
    run_s = 0.0

    def after(it: int, metrics: dict, _state) -> bool:
        nonlocal run_s
        run_s += metrics["seconds"]
        log(
            f"  iter {it}/{config.iterations}: expert {np.mean(metrics['expert_return']):.1f} "
            f"policy {np.mean(metrics['policy_return']):.1f} "
            f"lambda {np.mean(metrics['lambda_mean']):.3f} ({metrics['seconds']:.1f} s)"
        )
        if it < config.iterations and run_s + metrics["seconds"] > time_budget:
            log(f"  time budget {time_budget:.0f} s reached after {it} iterations")
            return True
        return False

    # the library's outer loop, the seeds side by side in one vmapped step
    result = fit(config, states, task=task, seeds=seeds, callback=after)
    states, history = result.state, result.history
    compile_s = result.compile_seconds + eval_compile_s
    t1 = time.perf_counter()
    final = _host(evaluate(states))
    eval_s = time.perf_counter() - t1
    sims = float(np.sum([np.sum(m["simulated_steps"]) for m in history]))
    return {
        "planner_only": False,
        "compile_s": compile_s,
        "train_s": run_s,
        "eval_s": eval_s,
        "wall_s": time.perf_counter() - t0,
        "simulated_steps_all_seeds": sims,
        **_budget_fields(config, task, seeds, eval_episodes),
        "iterations_done": len(history),
        "initial_eval": initial,
        "final_eval": final,
        "history": history,
    }


def base_config(args: argparse.Namespace) -> TrainConfig:
    """The budget every method shares: the preset (or :data:`DEFAULTS`), then the budget
    flags, then ``--set``."""
    flags = {
        "iterations": args.iterations,
        "num_envs": args.num_envs,
        "episode_length": args.episode_length,
        "sgd_steps": args.sgd_steps,
        "planner.population": args.population,
        "planner.horizon": args.horizon,
    }
    if args.preset is None:
        flags = {k: DEFAULTS.get(k) if v is None else v for k, v in flags.items()}
    items = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.devices is not None:
        items.append(f"num_devices={args.devices}")
    return train_config(args.task, args.preset, [*items, *args.set])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="the task's named budget (apexjax.presets: paper, cpu, smoke); the flags below "
        "and --set apply on top",
    )
    p.add_argument("--iterations", type=int, default=None, help=f"default {DEFAULTS['iterations']}")
    p.add_argument(
        "--num-envs", type=int, default=None, help="episodes per phase per seed (default 8)"
    )
    p.add_argument("--episode-length", type=int, default=None, help="0: the task's own")
    p.add_argument("--population", type=int, default=None, help="default 40")
    p.add_argument("--horizon", type=int, default=None, help="default 30")
    p.add_argument("--sgd-steps", type=int, default=None, help="default 500")
    p.add_argument("--weight", type=float, default=1.0, help="λ0 of fixed and apex")
    p.add_argument("--eval-episodes", type=int, default=16, help="per seed, every method")
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="split the episodes over N devices (on CPU: N host devices, created here)",
    )
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

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        methods = args.methods.split(",")
        if args.devices is not None:
            if args.devices < 1:
                raise ConfigError(f"--devices: must be >= 1, got {args.devices}")
            request_host_devices(args.devices)  # before JAX starts its backends
        base = base_config(args)
        configs = {m: method_config(base, m, args.weight) for m in methods}  # all errors first
        if args.eval_episodes < 1 or args.eval_episodes % base.num_devices:
            raise ConfigError(
                f"--eval-episodes: {args.eval_episodes} must be >= 1 and a multiple of "
                f"num_devices={base.num_devices}"
            )
    except (ConfigError, ValueError) as e:
        log(f"ablation.py: error: {e}")
        return 2

    out: dict = {
        "command": "python experiments/ablation.py " + " ".join(argv or sys.argv[1:]),
        "environment": environment_info(),
        "task": args.task,
        "seeds": seeds,
        "preset": args.preset,
        "reduction_vs_paper": presets.config_reduction(base),
        "eval_episodes": args.eval_episodes,
        "methods": {},
    }
    for m, cfg in configs.items():
        log(f"{args.task} / {m}: compiling ({len(seeds)} seeds vmapped)")
        if m in PLANNER_ONLY:
            res = run_planner_only(cfg, seeds, args.eval_episodes, log)
        else:
            res = run_method(cfg, seeds, args.eval_episodes, log, args.time_budget)
        res["config"] = to_dict(cfg)
        out["methods"][m] = res
        fe = res["final_eval"]
        policy = "" if m in PLANNER_ONLY else f"policy {np.mean(fe['policy_return']):.1f} vs "
        log(
            f"{args.task} / {m}: {policy}expert {np.mean(fe['expert_return']):.1f}; "
            f"compile {res['compile_s']:.0f} s, train {res['train_s']:.0f} s, "
            f"eval {res['eval_s']:.0f} s"
        )
        write_json(args.out, out)  # after each method, so a cut run keeps what finished
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

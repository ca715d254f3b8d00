"""How much of the expert's label at a state is the state, and how much the planner's memory.

    python experiments/label_noise.py RUN_DIR [--checkpoint N] [--steps 200] [--episodes 2] \
        [--states 30] [--repeats 8] [--out FILE.json]

A policy sees the state only. iCEM's answer at a state also depends on what it carries from
the previous control step (its shifted mean and elites). This measures, with the run's
expert planner (its policy candidates included; guidance left out, λ = 0) and its policy at
one checkpoint, for each way of starting the planner at a control step:

- the expert's closed-loop return over ``--steps`` steps from ``--episodes`` resets (how
  good an expert it makes);
- at ``--states`` states along the first of those episodes, the planner run ``--repeats``
  times with different keys: the label's variance between runs at one state (noise a
  regression cannot remove) against its variance between states (what a policy can learn),
  as the noise's share of the two, for the executed action and for the planner mean's
  first action (``label="mean"``), on actions normalised to [-1, 1]. Twice: started from
  what the way computes from the state alone (``state_only``: the carried mean and elites
  cleared; what a policy that sees only the state faces) and from the memory the expert
  carried to that state (``given_memory``);
- the mean squared distance from the policy's action to each label (state only): how far
  the labels would move the policy.

Ways of starting the planner: ``memory`` (iCEM's own: the mean and elites it carried),
``afresh`` (reset at every step), ``policy`` (sampling around the policy's own closed-loop
rollout, the previous step's elites still shifted in: ``warm_start="policy"``), ``policy,
no elites`` (the same without the shifted elites).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

WAYS = ("memory", "afresh", "policy", "policy, no elites")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--checkpoint", default="last")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--states", type=int, default=30)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    for name in ("steps", "episodes", "states", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name}: expected at least 1, got {getattr(args, name)}")
    if args.states > args.steps:
        raise SystemExit(f"--states: at most --steps ({args.steps}), got {args.states}")

    import jax
    import jax.numpy as jnp
    import numpy as np

    from apexjax import policy
    from apexjax.commands.eval import checkpoint_arg
    from apexjax.episodes import episode_fns
    from apexjax.guidance import GuidanceConfig
    from apexjax.planning import icem
    from apexjax.run import build_task
    from apexjax.train import load_checkpoint
    from benchmarks._common import save_results

    config, state = load_checkpoint(args.run_dir, checkpoint=checkpoint_arg(args.checkpoint))
    config = dataclasses.replace(config, episode_length=args.steps, guidance=GuidanceConfig("off"))
    task = build_task(config)
    low, high = jnp.asarray(task.action_low), jnp.asarray(task.action_high)

    def pi(obs):
        return policy.act(config.policy, state.policy, obs)

    def norm(a):
        return policy.normalize_action(a, low, high)

    def planner_and_start(way):
        """The expert's planner of ``way`` (the episodes' own control step: the policy's
        candidates, its warm start where the way has it, no guidance) as ``plan(key,
        planner_state, env_state)``, its config, and ``start(carried_planner_state)``."""
        cfg = config.expert_planner
        if way in ("afresh", "policy, no elites"):
            cfg = dataclasses.replace(cfg, shift_elites=False)
        warm = way.startswith("policy")
        way_config = dataclasses.replace(
            config, planner=cfg, warm_start="policy" if warm else "planner"
        )
        guided = episode_fns(way_config, task).plan

        def plan(key, ps, s):
            return guided(state.policy, key, ps, s, 0.0, False, warm)[:3]

        def start(ps):
            return icem.init(cfg, task.action_bounds) if way == "afresh" else ps

        return plan, cfg, start

    def expert_episodes(plan, cfg, start, key):
        def one(k):
            k0, k1 = jax.random.split(k)
            s0, ps0 = task.reset(k0), icem.init(cfg, task.action_bounds)

            def step(carry, kk):
                s, ps = carry
                ps = start(ps)
                a, ps_next, _ = plan(kk, ps, s)
                s2 = task.step(s, a)
                return (s2, ps_next), (task.cost(s, a, s2), s, ps)

            _, (costs, states, carried) = jax.lax.scan(
                step, (s0, ps0), jax.random.split(k1, args.steps)
            )
            return -jnp.sum(costs), states, carried

        return jax.jit(jax.vmap(one))(jax.random.split(key, args.episodes))

    def label_noise(plan, cfg, start, states, carried):
        """Noise shares of the executed and the mean label, state only and given the
        carried memory, and the policy's distance to the mean label (state only)."""
        fresh = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (len(jax.tree.leaves(states)[0]), *x.shape)),
            icem.init(cfg, task.action_bounds),
        )

        def one(s, ps, k):
            a, _, info = plan(k, start(ps), s)
            return norm(a), norm(info.mean_action)

        keys = jax.random.split(jax.random.key(args.seed + 1), args.repeats)
        f = jax.jit(jax.vmap(jax.vmap(one, (None, None, 0)), (0, 0, None)))
        out = {}
        for memory_name, memory in (("state_only", fresh), ("given_memory", carried)):
            executed, mean = (np.asarray(x) for x in f(states, memory, keys))  # [S, R, A]
            for name, lab in (("executed", executed), ("mean", mean)):
                within = float(lab.var(axis=1).mean())
                between = float(lab.mean(axis=1).var(axis=0).mean())
                out.setdefault(name, {})[memory_name] = {
                    "variance_between_runs": within,
                    "variance_between_states": between,
                    "noise_share": within / (within + between),
                }
            if memory_name == "state_only":
                pol = np.asarray(jax.vmap(lambda s: norm(pi(task.observation(s))))(states))
                for name, lab in (("executed", executed), ("mean", mean)):
                    dist = ((lab - pol[:, None]) ** 2).mean()  # over runs, states, actions
                    out[f"policy_to_{name}_label"] = float(dist)
        return out

    # the states the noise is measured at: along the first episode, past its first tenth
    idx = np.linspace(args.steps // 10, args.steps - 1, args.states).astype(int)

    def pick(x):
        return x[0, idx]

    rows = {}
    for way in WAYS:
        t0 = time.perf_counter()
        plan, cfg, start = planner_and_start(way)
        returns, states, carried = expert_episodes(plan, cfg, start, jax.random.key(args.seed))
        noise = label_noise(
            plan, cfg, start, jax.tree.map(pick, states), jax.tree.map(pick, carried)
        )
        rows[way] = {"expert_returns": np.asarray(returns).tolist(), **noise}
        rows[way]["seconds"] = time.perf_counter() - t0
        share = {
            (label, m): noise[label][m]["noise_share"]
            for label in ("executed", "mean")
            for m in ("state_only", "given_memory")
        }
        print(
            f"{way:18s} expert return over {args.steps} steps "
            f"{np.round(np.asarray(returns), 1).tolist()}; noise share, state only: executed "
            f"{share['executed', 'state_only']:.2f}, mean {share['mean', 'state_only']:.2f}; "
            f"given memory: executed {share['executed', 'given_memory']:.2f}, mean "
            f"{share['mean', 'given_memory']:.2f}; policy to label: executed "
            f"{noise['policy_to_executed_label']:.3f}, mean {noise['policy_to_mean_label']:.3f}",
            flush=True,
        )
    result = {
        "run_dir": str(args.run_dir),
        "task": config.task,
        "checkpoint": int(state.iteration),
        "planner": dataclasses.asdict(config.expert_planner),
        "policy_candidates": config.policy_candidates,
        "steps": args.steps,
        "episodes": args.episodes,
        "states": args.states,
        "repeats": args.repeats,
        "seed": args.seed,
        "ways": rows,
    }
    if args.out:
        save_results(args.out, result, "experiments/label_noise.py", argv or sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

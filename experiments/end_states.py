"""Where a policy's failed episodes end, and how much of the run's training data lies there.

    python experiments/end_states.py RUN_DIR [--checkpoint N|last] [--episodes 20] \
        [--tail 100] [--still 0.01] [--radius 1.0] [--out FILE.json]

A policy that fails the same way again and again (a half-cheetah on its back, a pole
hanging still) often ends its episodes in one pose that the expert seldom visited: the
aggregated dataset holds few labels there, and those few may disagree. This loads one
checkpoint of a run and:

1. lets its policy act alone (the training step's own policy episode: ``policy.act`` on
   ``task.observation``, no planner) for ``--episodes`` full episodes from the same start
   states as ``experiments/checkpoint_evals.py`` (its :func:`episode_keys`), recording
   each episode's return, final observation and whether it ends *still*: the mean
   absolute change of the observation vector per control step (over its dimensions and
   the last ``--tail`` steps, or the whole episode if shorter) is below ``--still``
   (default 0.01, in the observation's own units);
2. groups the still episodes' final observations greedily: in episode order, each joins
   the first group all of whose members lie within ``--radius`` of it, else starts one.
   Distances are Euclidean on the observation divided by the dataset's per-dimension std
   (``sqrt(var + normalizer_eps)`` over its valid rows, as the policy's normaliser): the
   default radius 1.0 admits one standard deviation in one dimension, or less spread over
   several;
3. for each group (largest first): its mean final observation, the policy's action there
   normalised to [-1, 1] (:func:`apexjax.policy.normalize_action`) and its Euclidean norm, the
   number of the dataset's valid rows within ``--radius`` of the mean (same distance) and
   the per-dimension std of their labels (normalised actions; null with fewer than two
   rows) with its mean over dimensions, and their mean label. The count can hinge on the
   radius (a cluster of rows just outside it), so it is also given for a quarter, half
   and twice the radius.

The dataset is the run's aggregated one in the checkpoint (``TrainState.dataset``, a ring
buffer: rows ``[0, size)`` are valid), the near rows also counted by who acted (the
expert, or the policy under DAgger) and the iteration. Prints one line per group; ``--out`` writes every
number above, with the command and the environment, as JSON.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def group_still(final_obs, still, radius: float) -> list[list[int]]:
    """Greedy groups of the still episodes' (already scaled) final observations.

    ``final_obs`` ``[E, O]``, ``still`` ``[E]`` bool. In episode order, each still episode
    joins the first group all of whose members lie within Euclidean ``radius`` of it, else
    starts a new one. Returns the groups as lists of episode indices, largest first (ties:
    the group started first).
    """
    import numpy as np

    x = np.asarray(final_obs, dtype=float)
    groups: list[list[int]] = []
    for i in np.flatnonzero(np.asarray(still)):
        for g in groups:
            if np.all(np.linalg.norm(x[g] - x[i], axis=-1) <= radius):
                g.append(int(i))
                break
        else:
            groups.append([int(i)])
    return sorted(groups, key=len, reverse=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--checkpoint", default="last", metavar="N|last|best")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--tail", type=int, default=100, help="steps the stillness is judged over")
    p.add_argument(
        "--still",
        type=float,
        default=0.01,
        help="an episode ends still if the mean absolute change of its observation vector "
        "per step over the last --tail steps is below this (default 0.01)",
    )
    p.add_argument(
        "--radius",
        type=float,
        default=1.0,
        help="grouping and neighbourhood radius on the observation divided by the dataset's "
        "per-dimension std (default 1.0)",
    )
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    for name in ("episodes", "tail"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name}: expected at least 1, got {getattr(args, name)}")
    for name in ("still", "radius"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"--{name}: expected a positive number, got {getattr(args, name)}")

    import jax
    import jax.numpy as jnp
    import numpy as np

    from apexjax import aggregator, policy
    from apexjax.commands.eval import checkpoint_arg
    from apexjax.episodes import episode_returns
    from apexjax.planning.rollout import rollout_closed_loop
    from apexjax.run import build_task
    from apexjax.train import load_checkpoint
    from benchmarks._common import save_results
    from experiments.checkpoint_evals import episode_keys

    config, state = load_checkpoint(args.run_dir, checkpoint=checkpoint_arg(args.checkpoint))
    task = build_task(config)
    T = task.episode_length
    tail = min(args.tail, T)
    low, high = task.action_low, task.action_high

    def pi(obs, pol=state.policy):
        return policy.act(config.policy, pol, obs)

    def episode(pol, key):
        """The training step's policy-alone episode, with its observations kept (the policy
        an argument, not a constant, as there: on a chaotic task the compiled arithmetic
        must match for the episodes to)."""
        _, obs, costs, final = rollout_closed_loop(
            task, task.reset(key), lambda s: pi(task.observation(s), pol), T
        )
        return jnp.concatenate([obs, task.observation(final)[None]]), costs

    run_episodes = jax.jit(jax.vmap(episode, in_axes=(None, 0)))
    obs, costs = run_episodes(state.policy, episode_keys(args.episodes))
    obs = np.asarray(obs, dtype=float)  # [E, T + 1, O]
    returns = np.asarray(episode_returns(costs), dtype=float)
    change = np.abs(np.diff(obs[:, -(tail + 1) :], axis=1)).mean(axis=(1, 2))
    still = change < args.still
    final = obs[:, -1]

    data = state.dataset
    n = int(data.size)  # the ring buffer's valid rows are [0, size)
    rows = np.asarray(data.obs[:n], dtype=float)
    labels = np.asarray(policy.normalize_action(data.actions[:n], low, high), dtype=float)
    scale = (
        np.sqrt(rows.var(axis=0) + config.policy.normalizer_eps) if n else np.ones(obs.shape[-1])
    )
    source = np.asarray(data.source[:n])
    iteration = np.asarray(data.iteration[:n])

    def near_by_origin(near):
        """The near rows counted by who acted (expert or the policy under DAgger) and the
        iteration that produced them (counted from 1, as the training's log does)."""
        counts: dict[str, int] = {}
        for src, it in zip(source[near], iteration[near], strict=True):
            name = "expert" if src == aggregator.SOURCE_EXPERT else "policy"
            name = f"{name}, iteration {it + 1}"
            counts[name] = counts.get(name, 0) + 1
        return counts

    groups = []
    for members in group_still(final / scale, still, args.radius):
        centre = final[members].mean(axis=0)
        a = np.asarray(policy.normalize_action(pi(jnp.asarray(centre, jnp.float32)), low, high))
        a = a.astype(float)
        dist = np.linalg.norm((rows - centre) / scale, axis=-1)
        near = dist <= args.radius
        label_std = labels[near].std(axis=0) if near.sum() >= 2 else None
        groups.append(
            {
                "size": len(members),
                "episodes": members,
                "mean_final_observation": centre.tolist(),
                "policy_action": a.tolist(),
                "policy_action_norm": float(np.linalg.norm(a)),
                "dataset_rows_near": int(near.sum()),
                "dataset_rows_near_by_radius": {
                    str(f * args.radius): int(np.sum(dist <= f * args.radius))
                    for f in (0.25, 0.5, 1.0, 2.0)
                },
                "dataset_rows_near_by_origin": near_by_origin(near),
                "label_std": None if label_std is None else label_std.tolist(),
                "label_std_mean": None if label_std is None else float(label_std.mean()),
                "label_mean": labels[near].mean(axis=0).tolist() if near.any() else None,
            }
        )

    print(
        f"{config.task} checkpoint {int(state.iteration)}: return {returns.mean():.1f} "
        f"(median {np.median(returns):.1f}) over {args.episodes} episodes, "
        f"{int(still.sum())} end still, {len(groups)} groups; {n} dataset rows",
        flush=True,
    )
    for i, g in enumerate(groups):
        std = "n/a" if g["label_std_mean"] is None else f"{g['label_std_mean']:.2f}"
        print(
            f"group {i}: {g['size']} episodes, returns "
            f"{np.round(returns[g['episodes']], 1).tolist()}; policy action norm "
            f"{g['policy_action_norm']:.2f}; {g['dataset_rows_near']} dataset rows within "
            f"{args.radius}, label std {std}",
            flush=True,
        )
    result = {
        "run_dir": str(args.run_dir),
        "task": config.task,
        "checkpoint": int(state.iteration),
        "episodes": args.episodes,
        "episode_length": T,
        "tail": tail,
        "still_threshold": args.still,
        "radius": args.radius,
        "returns": returns.tolist(),
        "still": still.tolist(),
        "tail_change": change.tolist(),
        "final_observations": final.tolist(),
        "still_episodes": int(still.sum()),
        "dataset_rows": n,
        "observation_scale": scale.tolist(),
        "groups": groups,
    }
    if args.out:
        save_results(args.out, result, "experiments/end_states.py", argv or sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

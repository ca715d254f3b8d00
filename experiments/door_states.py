"""Where a door policy's hand goes, and what its dataset shows of the part that matters.

    python experiments/door_states.py RUN_DIR [--checkpoints 1,2,3] [--episodes 20] \
        [--episode-length N] [--open 0.2] [--out FILE.json]

For each checkpoint of a ``door`` run:

1. its policy acts alone (the training step's own policy episode, no planner) for
   ``--episodes`` full episodes from the same start states as
   ``experiments/checkpoint_evals.py`` (the run's episode length, or ``--episode-length``:
   0 for the task's own 200 steps, for a run trained on shorter episodes); per episode: the palm-to-handle distance (m) at
   steps 0, 25, 50, 100 and the last, its minimum, the largest latch and hinge angles
   (rad) and success;
2. the checkpoint's aggregated dataset, split by who acted (the expert, or the policy under
   DAgger) and by whether the door was already open in the row's state (hinge above
   ``--open`` rad): the number of rows, palm-to-handle distance quantiles (10/50/90 %), and
   the checkpoint policy's loss on them (mean squared difference of normalised actions, as
   the training step reports its loss): does the policy fit the rows where the door is
   still shut, the ones that teach it to open it?

The observation layout is the door task's (``apexjax.envs.tasks.door.Door.observation``):
latch at index 27, hinge at 28, palm minus handle at 35-37. Prints a few lines per
checkpoint; ``--out`` writes every number, with the command and the environment.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

LATCH, HINGE, PALM_TO_HANDLE = 27, 28, slice(35, 38)
STEPS = (0, 25, 50, 100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--checkpoints", default="last", help="comma-separated numbers, or 'last'")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument(
        "--episode-length",
        type=int,
        default=None,
        help="control steps per policy episode: the run's by default, 0 for the task's own",
    )
    p.add_argument("--open", type=float, default=0.2, help="hinge angle (rad) counted as open")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    if args.episodes < 1:
        raise SystemExit(f"--episodes: expected at least 1, got {args.episodes}")
    if args.episode_length is not None and args.episode_length < 0:
        raise SystemExit(f"--episode-length: expected 0 or more, got {args.episode_length}")

    import dataclasses

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

    wanted = (
        ["last"] if args.checkpoints == "last" else [c for c in args.checkpoints.split(",") if c]
    )
    results = []
    for ck in wanted:
        config, state = load_checkpoint(args.run_dir, checkpoint=checkpoint_arg(ck))
        if config.task != "door":
            raise SystemExit(f"{args.run_dir}: a {config.task!r} run; this script reads door runs")
        if args.episode_length is not None:
            config = dataclasses.replace(config, episode_length=args.episode_length)
        task = build_task(config)
        T = task.episode_length
        low, high = task.action_low, task.action_high

        def episode(pol, key, task=task, config=config, T=T):
            def act(st):
                return policy.act(config.policy, pol, task.observation(st))

            _, obs, costs, final = rollout_closed_loop(task, task.reset(key), act, T)
            obs = jnp.concatenate([obs, task.observation(final)[None]])
            return obs, costs, task.success(final)

        run = jax.jit(jax.vmap(episode, in_axes=(None, 0)))
        obs, costs, success = run(state.policy, episode_keys(args.episodes))
        obs = np.asarray(obs, dtype=float)
        dist = np.linalg.norm(obs[:, :, PALM_TO_HANDLE], axis=-1)
        steps = [s for s in STEPS if s < T] + [T]
        episodes = {
            "return": [round(float(r), 2) for r in np.asarray(episode_returns(costs))],
            "success": [bool(s) for s in np.asarray(success)],
            "distance_at": {str(s): [round(float(x), 4) for x in dist[:, s]] for s in steps},
            "distance_min": [round(float(x), 4) for x in dist.min(axis=1)],
            "latch_max": [round(float(x), 4) for x in obs[:, :, LATCH].max(axis=1)],
            "hinge_max": [round(float(x), 4) for x in obs[:, :, HINGE].max(axis=1)],
        }

        data = state.dataset
        n = int(data.size)
        rows = np.asarray(data.obs[:n], dtype=float)
        labels = policy.normalize_action(data.actions[:n], low, high)
        predicted = policy.normalize_action(
            policy.act(config.policy, state.policy, data.obs[:n]), low, high
        )
        err = np.asarray(jnp.mean((predicted - labels) ** 2, axis=-1), dtype=float)
        source = np.asarray(data.source[:n])
        is_open = rows[:, HINGE] > args.open
        groups = {}
        for who, code in (
            ("expert", aggregator.SOURCE_EXPERT),
            ("dagger", aggregator.SOURCE_POLICY),
        ):
            for phase, mask in (("shut", ~is_open), ("open", is_open)):
                sel = (source == code) & mask
                d = np.linalg.norm(rows[sel][:, PALM_TO_HANDLE], axis=-1)
                groups[f"{who}_{phase}"] = {
                    "rows": int(sel.sum()),
                    "distance_q10_q50_q90": (
                        [round(float(x), 4) for x in np.quantile(d, [0.1, 0.5, 0.9])]
                        if sel.any()
                        else None
                    ),
                    "policy_loss": round(float(err[sel].mean()), 5) if sel.any() else None,
                }
        record = {
            "checkpoint": ck,
            "iteration": int(state.iteration),
            "episode_length": T,
            "policy_success": float(np.mean(episodes["success"])),
            "policy_return": float(np.mean(episodes["return"])),
            "distance_mean_at": {
                s: round(float(np.mean(v)), 4) for s, v in episodes["distance_at"].items()
            },
            "distance_min_mean": round(float(np.mean(episodes["distance_min"])), 4),
            "episodes": episodes,
            "dataset": groups,
        }
        results.append(record)
        print(
            f"checkpoint {record['iteration']}: success {record['policy_success']:.2f}, "
            f"palm-handle distance by step {record['distance_mean_at']}, "
            f"closest {record['distance_min_mean']}"
        )
        for name, g in groups.items():
            print(f"  {name}: {g}")

    if args.out is not None:
        result = {
            "run_dir": str(args.run_dir),
            "episodes": args.episodes,
            "open": args.open,
            "checkpoints": results,
        }
        save_results(args.out, result, "experiments/door_states.py", argv or sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

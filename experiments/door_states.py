"""Where a door policy's hand goes, and what its dataset shows of the part that matters.

    python experiments/door_states.py RUN_DIR [--checkpoints 1,2,3] [--episodes 20] \
        [--episode-length N] [--open 0.2] [--latch 0.3] [--out FILE.json]

For each checkpoint of a ``door`` run:

1. its policy acts alone (the training step's own policy episode, no planner) for
   ``--episodes`` full episodes from the same start states as
   ``experiments/checkpoint_evals.py`` (the run's episode length, or ``--episode-length``:
   0 for the task's own 200 steps, for a run trained on shorter episodes); per episode: the palm-to-handle distance (m) at
   steps 0, 25, 50, 100 and the last, its minimum, the largest latch and hinge angles
   (rad) and success; and over the episodes, the median closest approach and how many
   turned the latch past ``--latch`` rad and swung the door past ``--open`` rad;
2. the checkpoint's aggregated dataset, split by who acted (the expert, or the policy under
   DAgger) and by whether the door was already open in the row's state (hinge above
   ``--open`` rad): the number of rows, palm-to-handle distance quantiles (10/50/90 %), and
   the checkpoint policy's loss on them (mean squared difference of normalised actions, as
   the training step reports its loss): does the policy fit the rows where the door is
   still shut, the ones that teach it to open it?
3. per expert episode in that dataset (its rows are stored episode after episode, as the
   training step adds them): the first step whose latch is past ``--latch`` rad and the
   first whose hinge is past ``--open`` rad (None where it never is), and over the
   episodes that reach both, the steps between them: how many rows of each expert episode
   show the pull that follows the latch.

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


def episode(task, config, pol, key):
    """The training step's policy-alone episode: observations of every state, the final
    one included, costs, success, and the final hinge angle and palm-to-handle vector as
    the task computes them."""
    import jax.numpy as jnp

    from apexjax import policy
    from apexjax.planning.rollout import rollout_closed_loop

    def act(st):
        return policy.act(config.policy, pol, task.observation(st))

    _, obs, costs, final = rollout_closed_loop(task, task.reset(key), act, task.episode_length)
    obs = jnp.concatenate([obs, task.observation(final)[None]])
    return obs, costs, task.success(final), task.hinge(final), task.palm_to_handle(final)


def group_loss(config, state, rows):
    """The training step's imitation loss (:func:`apexjax.policy.loss`) over the dataset
    rows selected by the boolean mask ``rows`` (over the valid rows)."""
    from apexjax import policy

    data, pol = state.dataset, state.policy
    n = int(data.size)
    return policy.loss(
        config.policy,
        pol.params,
        pol.normalizer,
        data.obs[:n],
        data.actions[:n],
        rows.astype("float32"),
        pol.action_low,
        pol.action_high,
    )


def expert_phases(rows, source, iteration, num_envs: int, args) -> list[dict]:
    """Per expert episode of a dataset (``num_envs`` episodes per iteration, each one's rows
    contiguous): its iteration, the first step with the latch past ``args.latch`` and the
    first with the hinge past ``args.open`` (None where never)."""
    import numpy as np

    from apexjax import aggregator

    out = []
    for it in np.unique(iteration):
        sel = (source == aggregator.SOURCE_EXPERT) & (iteration == it)
        if not sel.any():
            continue
        if sel.sum() % num_envs:
            raise SystemExit(
                f"iteration {int(it)}: {int(sel.sum())} expert rows are not {num_envs} episodes"
            )
        for ep in rows[sel].reshape(num_envs, -1, rows.shape[1]):
            latch = np.flatnonzero(ep[:, LATCH] > args.latch)
            hinge = np.flatnonzero(ep[:, HINGE] > args.open)
            first = [int(x[0]) if x.size else None for x in (latch, hinge)]
            out.append(
                {
                    "iteration": int(it),
                    "steps": int(ep.shape[0]),
                    "latch_step": first[0],
                    "open_step": first[1],
                    "pull_steps_known": None not in first and first[1] >= first[0],
                }
            )
    return out


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
    p.add_argument("--latch", type=float, default=0.3, help="latch angle (rad) counted as turned")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    if args.episodes < 1:
        raise SystemExit(f"--episodes: expected at least 1, got {args.episodes}")
    if args.episode_length is not None and args.episode_length < 0:
        raise SystemExit(f"--episode-length: expected 0 or more, got {args.episode_length}")

    import dataclasses
    from functools import partial

    import jax
    import numpy as np

    from apexjax import aggregator
    from apexjax.commands.eval import checkpoint_arg
    from apexjax.episodes import episode_returns
    from apexjax.run import build_task
    from apexjax.train import load_checkpoint
    from benchmarks._common import save_results
    from experiments.checkpoint_evals import episode_keys

    wanted = (
        ["last"] if args.checkpoints == "last" else [c for c in args.checkpoints.split(",") if c]
    )
    task = run = None  # built once: every checkpoint of a run has the same task and policy
    results = []
    for ck in wanted:
        config, state = load_checkpoint(args.run_dir, checkpoint=checkpoint_arg(ck))
        if config.task != "door":
            raise SystemExit(f"{args.run_dir}: a {config.task!r} run; this script reads door runs")
        if args.episode_length is not None:
            config = dataclasses.replace(config, episode_length=args.episode_length)
        if run is None:
            task = build_task(config)
            run = jax.jit(jax.vmap(partial(episode, task, config), in_axes=(None, 0)))
        T = task.episode_length
        obs, costs, success, hinge, reach = run(state.policy, episode_keys(args.episodes))
        obs = np.asarray(obs, dtype=float)
        # the indices above read the task's own observation: checked at every final state
        if not (
            np.allclose(obs[:, -1, HINGE], hinge, atol=1e-6)
            and np.allclose(obs[:, -1, PALM_TO_HANDLE], reach, atol=1e-6)
        ):
            raise SystemExit("the door's observation layout changed: update this script's indices")
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
                    "policy_loss": (
                        round(float(group_loss(config, state, sel)), 5) if sel.any() else None
                    ),
                }
        phases = expert_phases(rows, source, np.asarray(data.iteration[:n]), config.num_envs, args)
        pulls = [e["open_step"] - e["latch_step"] for e in phases if e["pull_steps_known"]]
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
            "distance_min_median": round(float(np.median(episodes["distance_min"])), 4),
            # episodes whose latch turned past --latch, and whose door swung past --open
            "latch_turned": int(np.sum(np.array(episodes["latch_max"]) > args.latch)),
            "door_opened": int(np.sum(np.array(episodes["hinge_max"]) > args.open)),
            "episodes": episodes,
            "dataset": groups,
            "expert_episodes": phases,
            "expert_pull_steps": pulls,
        }
        results.append(record)
        print(
            f"checkpoint {record['iteration']}: success {record['policy_success']:.2f}, "
            f"palm-handle distance by step {record['distance_mean_at']}, "
            f"closest {record['distance_min_mean']} (median {record['distance_min_median']}), "
            f"latch past {args.latch} rad in {record['latch_turned']}, "
            f"hinge past {args.open} rad in {record['door_opened']} of {args.episodes} episodes"
        )
        for name, g in groups.items():
            print(f"  {name}: {g}")
        print(f"  expert episodes: {len(phases)}, steps from latch to open: {pulls}")

    if args.out is not None:
        result = {
            "run_dir": str(args.run_dir),
            "episodes": args.episodes,
            "open": args.open,
            "latch": args.latch,
            "checkpoints": results,
        }
        save_results(args.out, result, "experiments/door_states.py", argv or sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

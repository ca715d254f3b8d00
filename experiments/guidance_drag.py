"""How far a fixed guidance weight drags the expert toward an untrained policy.

    python experiments/guidance_drag.py TASK --weights 0,0.03,0.1 [--seeds 0,1] \
        [--preset paper] [--set FIELD=VALUE ...] [--episode-length N] [--block 100] \
        [--policy-from RUN_DIR [--checkpoint N]] [--out FILE.json]

The training step's own expert episode (:attr:`apexjax.episodes.EpisodeFns.expert`: iCEM
with the policy's candidates in its population and the guidance cost, the planner acting)
toward the untrained policy of the run's config (``init_train_state``: what a run's first
iteration is guided toward), at λ fixed to each of ``--weights`` (``guidance.mode=fixed``,
``guidance.weight=λ``, the whole episode), one episode per seed with the episode key
``PRNGKey(seed)`` (the same start state and planner keys at every λ). ``--policy-from``
guides toward a trained run's policy instead (:func:`apexjax.train.init_state_from`, the
policy alone, of ``--checkpoint``): the expert of a run at that checkpoint. The config is
:func:`apexjax.presets.train_config` of the task, the preset and the ``--set`` items, as
``apexjax train`` builds it. Prints one line per episode: its return, its success where the
task has one, and the mean return per step over consecutive ``--block``-step blocks (on
Humanoid Standup, about the torso height); ``--out`` writes them with the command and the
environment as JSON.

At the first iteration of a ``fixed`` run the untrained policy outputs the middle of the
action range, so its guidance is an extra cost on the action's distance from the middle: on
a task whose answer needs large actions (standing up) even a small λ can keep the expert
from finding it, which no later iteration can undo when the policy only learns from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("task")
    p.add_argument("--weights", type=_floats, required=True, metavar="L1,L2,...")
    p.add_argument("--seeds", type=_ints, default=[0], metavar="S1,S2,...")
    p.add_argument("--preset", default="paper")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--episode-length", type=int, default=0, help="0: the task's own")
    p.add_argument("--block", type=int, default=100, help="steps per block of the per-step means")
    p.add_argument("--policy-from", type=pathlib.Path, default=None, metavar="RUN_DIR")
    p.add_argument("--checkpoint", default="last", metavar="N|last|best")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    if not args.weights or min(args.weights) < 0:
        raise SystemExit(f"--weights: expected numbers >= 0, got {args.weights}")
    if not args.seeds:
        raise SystemExit("--seeds: expected at least one seed")
    if args.episode_length < 0 or args.block < 1:
        raise SystemExit("--episode-length: expected >= 0; --block: expected >= 1")
    if any(item.split("=", 1)[0].strip().startswith("guidance.") for item in args.set):
        raise SystemExit("--set guidance.*: the script sets the guidance itself (--weights)")

    import jax
    import jax.numpy as jnp
    import numpy as np

    from apexjax import presets
    from apexjax.commands.eval import checkpoint_arg
    from apexjax.episodes import episode_fns, episode_returns
    from apexjax.loop import build_task, init_train_state
    from apexjax.train import init_state_from
    from benchmarks._common import save_results

    items = [*args.set, "num_envs=1", "guidance.mode=fixed"]
    if args.episode_length:
        items.append(f"episode_length={args.episode_length}")
    base = presets.train_config(args.task, args.preset, items)
    # the task and the policy do not depend on λ: built and loaded once
    task = build_task(base)
    if args.policy_from is None:
        state, source = init_train_state(base, task), "untrained"
    else:
        state, source = init_state_from(
            base, task, args.policy_from, checkpoint=checkpoint_arg(args.checkpoint), dataset=False
        )
    rows = []
    for lam in args.weights:
        config = dataclasses.replace(base, guidance=dataclasses.replace(base.guidance, weight=lam))
        fns = episode_fns(config, task)  # fixed mode holds λ0 from the second step on
        run = jax.jit(
            lambda pol, key, f=fns, w=lam: f.expert(pol, key, False, jnp.float32(w), True)
        )
        for i, seed in enumerate(args.seeds):
            t0 = time.perf_counter()
            ep = jax.block_until_ready(run(state.policy, jax.random.PRNGKey(seed)))
            seconds = time.perf_counter() - t0
            costs = np.asarray(ep.costs, dtype=float)
            n = len(costs) // args.block * args.block
            blocks = (-costs[:n].reshape(-1, args.block).mean(axis=1)).round(3).tolist()
            row = {
                "weight": lam,
                "seed": seed,
                "return": float(episode_returns(ep.costs)),
                "success": bool(ep.success),
                "per_block_mean_return": blocks,
                "weights_seen": [float(np.min(ep.weights)), float(np.max(ep.weights))],
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"λ {lam:g} seed {seed}: return {row['return']:.1f}, success {row['success']}, "
                f"per {args.block} steps {' '.join(f'{b:.2f}' for b in blocks)} ({seconds:.0f} s"
                + (", compile included)" if i == 0 else ")"),
                flush=True,
            )
    if args.out is not None:
        result = {
            "task": args.task,
            "preset": args.preset,
            "set": args.set,
            "episode_length": args.episode_length or None,
            "block": args.block,
            "policy": source,
            "episodes": rows,
        }
        save_results(args.out, result, "experiments/guidance_drag.py", argv or sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every checkpoint of one or more runs, the policy alone on the same fresh episodes.

    python experiments/checkpoint_evals.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--episodes 20] \
        [--first N] [--out FILE.json]

The training step measures the policy alone on its own ``num_envs`` episodes per
iteration, different ones every iteration: with 2 of them a learning curve says little.
This loads each saved checkpoint of each run and lets its policy act alone, with the
training step's own policy episode (vmapped, no planner), on the same ``--episodes``
start states for every checkpoint and every run (keys from ``PRNGKey(1000)``, as
``experiments/refit.py`` uses), so runs that differ in one setting compare checkpoint by
checkpoint on identical episodes. The runs must be of one task. ``--first N`` skips the
checkpoints before N (a run continued or forked from another measured one).

Writes, per run and checkpoint, the mean return, its standard deviation and median over
episodes, every episode's return (on a chaotic task a few failed episodes, such as a
half-cheetah on its back, move the mean by hundreds) and the success rate (tasks with a
success test), with the command and the environment.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def parse_run(text: str) -> tuple[str, pathlib.Path]:
    """``NAME=RUN_DIR`` -> (name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"run {text!r}: expected NAME=RUN_DIR")
    return name, pathlib.Path(path)


def episode_keys(episodes: int):
    """The start keys of the ``episodes`` policy episodes every checkpoint and run is
    measured on (``PRNGKey(1000)`` split; shared with ``experiments/refit.py`` and
    ``experiments/end_states.py``)."""
    import jax

    return jax.random.split(jax.random.PRNGKey(1000), episodes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--first", type=int, default=1, help="the first checkpoint to measure")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    runs = [parse_run(r) for r in args.runs]
    if args.episodes < 1:
        raise SystemExit(f"--episodes: expected at least 1, got {args.episodes}")

    import jax
    import jax.numpy as jnp
    import numpy as np

    from apexjax.episodes import episode_fns, episode_returns
    from apexjax.run import build_task
    from apexjax.train import checkpoint_steps, load_checkpoint
    from benchmarks._common import save_results

    keys = episode_keys(args.episodes)
    results: dict[str, object] = {"episodes": args.episodes, "runs": {}}
    task_name = None
    for name, run_dir in runs:
        steps = [s for s in checkpoint_steps(run_dir) if s >= args.first]
        if not steps:
            raise SystemExit(
                f"{run_dir}: no checkpoints" + (f" from {args.first} on" if args.first > 1 else "")
            )
        cfg, _ = load_checkpoint(run_dir, checkpoint=steps[-1])
        if task_name not in (None, cfg.task):
            raise SystemExit(f"{run_dir}: task {cfg.task!r}, but the first run's is {task_name!r}")
        task_name = cfg.task
        task = build_task(cfg)
        alone = episode_fns(cfg, task).policy
        run_episodes = jax.jit(jax.vmap(alone, in_axes=(None, 0)))
        rows = []
        for step in steps:
            _, st = load_checkpoint(run_dir, checkpoint=step)
            ep = run_episodes(st.policy, keys)
            ret = np.asarray(episode_returns(ep.costs), dtype=float)
            row = {
                "checkpoint": step,
                "policy_return": float(np.mean(ret)),
                "policy_return_std": float(np.std(ret)),
                "policy_return_median": float(np.median(ret)),
                "policy_returns": [round(float(x), 2) for x in ret],
                "policy_success": float(jnp.mean(ep.success)) if task.has_success else None,
            }
            rows.append(row)
            print(
                f"{name} checkpoint {step}: return {row['policy_return']:.2f} "
                f"± {row['policy_return_std']:.2f}, success {row['policy_success']}",
                flush=True,
            )
        rets = [r["policy_return"] for r in rows]
        results["runs"][name] = {  # type: ignore[index]
            "run_dir": str(run_dir),
            "config": {"label": cfg.label, "guidance": cfg.guidance.mode},
            "checkpoints": rows,
            "median_return": statistics.median(rets),
            "last_return": rets[-1],
        }
    results["task"] = task_name
    if args.out is not None:
        save_results(
            args.out,
            results,
            "experiments/checkpoint_evals.py",
            argv if argv is not None else sys.argv[1:],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

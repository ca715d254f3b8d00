"""Is the fit the bottleneck? Refit fresh policies on a run's aggregated dataset, offline.

    python experiments/refit.py RUN_DIR [--episodes 8] [--variant NAME:KEY=VALUE,...:STEPS] ...
        [--out FILE.json]

Loads the last checkpoint of an ``apexjax train`` run directory, takes every row of its
dataset (expert and DAgger labels), and for each variant trains a new policy from scratch
(the run's policy config with the variant's ``policy.*`` overrides, ``STEPS`` SGD steps,
minibatches drawn uniformly from the rows; ``expert`` in a variant's name keeps the expert
rows only). Each refit policy then acts alone for ``--episodes`` fresh episodes (the same
start states for every variant, and for the run's own checkpoint policy, evaluated first).

Per variant: the mean minibatch loss over its SGD steps, the loss over all rows
(normalised actions, as the training step reports it), the fit's wall-clock, the policy's
mean return and success rate. A fit far below the run's own loss that still fails says the
labels, not the network or the SGD budget, limit the policy.

Variants (default: the table below): ``NAME:OVERRIDES:STEPS`` with OVERRIDES
``hidden=512x512`` / ``learning_rate=3e-4`` / ``batch_size=1024`` joined by ``,`` (empty for
none).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

DEFAULT_VARIANTS = (
    "base 1000::1000",
    "base 10k::10000",
    "512x512 10k:hidden=512x512:10000",
    "512x512 30k:hidden=512x512:30000",
    "512x3 20k:hidden=512x512x512:20000",
    "expert-only 10k::10000",
)


def parse_variant(text: str) -> tuple[str, dict[str, object], int]:
    """``NAME:KEY=VALUE,...:STEPS`` -> (name, policy overrides, steps)."""
    try:
        name, over, steps = text.split(":")
        overrides: dict[str, object] = {}
        for item in filter(None, over.split(",")):
            key, value = item.split("=")
            if key == "hidden":
                overrides[key] = tuple(int(x) for x in value.split("x"))
            elif key == "batch_size":
                overrides[key] = int(value)
            else:
                overrides[key] = float(value)
        return name, overrides, int(steps)
    except ValueError as e:
        raise SystemExit(f"--variant {text!r}: expected NAME:KEY=VALUE,...:STEPS ({e})") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--variant", action="append", default=None)
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from apexjax import aggregator, policy
    from apexjax.episodes import episode_fns, episode_returns
    from apexjax.run import build_task
    from apexjax.train import load_checkpoint
    from benchmarks._common import save_results
    from experiments.checkpoint_evals import episode_keys

    cfg, st = load_checkpoint(args.run_dir)
    task = build_task(cfg)
    n = int(st.dataset.size)
    obs, act = st.dataset.obs[:n], st.dataset.actions[:n]
    src = np.asarray(st.dataset.source[:n])

    keys = episode_keys(args.episodes)

    def evaluate(pcfg: policy.PolicyConfig, pst: policy.PolicyState) -> tuple[float, float | None]:
        """The policy alone on the same fresh episodes: the training step's own evaluation."""
        alone = episode_fns(dataclasses.replace(cfg, policy=pcfg), task).policy
        ep = jax.jit(jax.vmap(lambda k: alone(pst, k)))(keys)
        ret = float(jnp.mean(episode_returns(ep.costs)))
        return ret, float(jnp.mean(ep.success)) if task.has_success else None

    ret, succ = evaluate(cfg.policy, st.policy)
    results: dict[str, object] = {
        "run_dir": str(args.run_dir),
        "iteration": int(st.iteration),
        "rows": n,
        "expert_rows": int(np.sum(src == aggregator.SOURCE_EXPERT)),
        "episodes": args.episodes,
        "checkpoint_policy": {"return": ret, "success": succ},
        "variants": [],
    }
    print(f"{args.run_dir}: {n} rows; checkpoint policy return {ret:.2f} success {succ}")
    low, high = task.action_low, task.action_high
    for name, over, steps in map(parse_variant, args.variant or DEFAULT_VARIANTS):
        pcfg = dataclasses.replace(cfg.policy, **over)
        pst = policy.init(pcfg, jax.random.PRNGKey(0), obs.shape[1], low, high)
        keep = (src == aggregator.SOURCE_EXPERT) if "expert" in name else np.ones(n, bool)
        o, a = obs[keep], act[keep]
        pst = policy.update_normalizer(pst, o)

        def sample(k, o=o, a=a, bs=pcfg.batch_size):
            i = jax.random.randint(k, (bs,), 0, o.shape[0])
            return o[i], a[i], jnp.ones(bs)

        t0 = time.perf_counter()
        fit = jax.jit(
            lambda s, k, pcfg=pcfg, sample=sample, steps=steps: policy.train_steps(
                pcfg, s, k, sample, steps
            )
        )
        pst, loss = fit(pst, jax.random.PRNGKey(1))
        loss = float(loss)
        fit_s = time.perf_counter() - t0
        full = float(policy.loss(pcfg, pst.params, pst.normalizer, obs, act, None, low, high))
        ret, succ = evaluate(pcfg, pst)
        row = dict(
            name=name,
            policy=over,
            sgd_steps=steps,
            rows=int(keep.sum()),
            train_loss=loss,
            all_rows_loss=full,
            fit_s=fit_s,
            policy_return=ret,
            policy_success=succ,
        )
        results["variants"].append(row)  # type: ignore[union-attr]
        print(
            f"{name}: train loss {loss:.4f}, all rows {full:.4f}, fit {fit_s:.0f} s, "
            f"policy return {ret:.2f}, success {succ}",
            flush=True,
        )
    if args.out is not None:
        save_results(args.out, results, "experiments/refit.py", argv or sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

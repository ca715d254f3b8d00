"""Is the fit the bottleneck? Refit fresh policies on a run's aggregated dataset, offline.

    python experiments/refit.py RUN_DIR [--episodes 8] [--variant NAME:KEY=VALUE,...:STEPS] ...
        [--pool OTHER_RUN_DIR[:FIRST_ITERATION]] ... [--out FILE.json]

Loads the last checkpoint of an ``apexjax train`` run directory, takes every row of its
dataset (expert and DAgger labels), and for each variant trains a new policy from scratch
(the run's policy config with the variant's ``policy.*`` overrides, ``STEPS`` SGD steps,
minibatches drawn uniformly from the rows; ``expert`` in a variant's name keeps the expert
rows only). Each refit policy then acts alone for ``--episodes`` fresh episodes (the same
start states for every variant, and for the run's own checkpoint policy, evaluated first).

``--pool`` adds the rows of other runs of the same task (their last checkpoints; with
``:FIRST_ITERATION`` only the rows of that iteration and later, counted from 0 as the dataset
stores them, e.g. to leave out a first iteration two forked runs share): does more data of
the same kind make a policy that the one run's data does not? The evaluation episodes are
RUN_DIR's, and ``since=N`` counts each run's own iterations.

Per variant: the mean minibatch loss over its SGD steps, the loss over all rows
(normalised actions, as the training step reports it), the fit's wall-clock, the policy's
mean return and success rate. A fit far below the run's own loss that still fails says the
labels, not the network or the SGD budget, limit the policy.

Variants (default: the table below): ``NAME:OVERRIDES:STEPS`` with OVERRIDES
``hidden=512x512`` / ``learning_rate=3e-4`` / ``batch_size=1024`` joined by ``,`` (empty for
none), and some that are not policy settings:

- ``ensemble=K``: K networks fitted from different initial weights and minibatches, acting
  with their average (pre-``tanh`` outputs averaged, written as one wide network with
  block-diagonal hidden weights, so the policy is an ordinary apexjax policy);
- ``since=N``: only the rows of iterations N and later, counted from 0 as the dataset
  stores them (``norm_since=M``: the observation normaliser from the rows of iterations M
  and later instead);
- ``seed=S``: another initial network and minibatch sequence;
- ``lr_end=X``: the step size decayed geometrically from the policy's learning rate to X
  over the fit (in ten equal chunks);
- ``up=K,up_col=I,up_below=X``: rows whose observation column I is below X drawn K times
  as often as the others (on the door, column 28 is the hinge angle: ``up_below=0.2``
  oversamples the rows before the door opens, the reach, the grasp and the pull).
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
            elif key in ("batch_size", "ensemble", "since", "seed", "norm_since", "up_col"):
                overrides[key] = int(value)
            else:
                overrides[key] = float(value)
        return name, overrides, int(steps)
    except ValueError as e:
        raise SystemExit(f"--variant {text!r}: expected NAME:KEY=VALUE,...:STEPS ({e})") from None


def parse_pool(text: str) -> tuple[pathlib.Path, int]:
    """``RUN_DIR[:FIRST_ITERATION]`` -> (run directory, first iteration kept, 0 by default)."""
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit():
        return pathlib.Path(head), int(tail)
    return pathlib.Path(text), 0


LR_CHUNKS = 10


def set_learning_rate(opt_state, lr: float):
    """``opt_state`` of :func:`apexjax.policy.make_optimizer` with its step size set to ``lr``
    (a geometric decay to ``lr_end`` in ``LR_CHUNKS`` steps, between chunks of SGD)."""
    import jax.numpy as jnp

    def one(s):
        if hasattr(s, "hyperparams"):
            hp = dict(s.hyperparams)
            hp["learning_rate"] = jnp.asarray(lr, jnp.asarray(hp["learning_rate"]).dtype)
            return s._replace(hyperparams=hp)
        return s

    if isinstance(opt_state, tuple) and not hasattr(opt_state, "hyperparams"):
        return type(opt_state)(one(s) for s in opt_state)
    return one(opt_state)


def ensemble(pcfg, members):
    """K fitted policies (same config and normaliser) as one policy that acts with their mean
    pre-``tanh`` output: hidden layers side by side (the first layer's weights concatenated,
    the others block-diagonal), the last layer's weights stacked and divided by K."""
    import jax.numpy as jnp
    from jax.scipy.linalg import block_diag

    k, last = len(members), len(pcfg.hidden)
    params = []
    for i in range(last + 1):
        ws = [m.params[i]["W"] for m in members]
        bs = [m.params[i]["b"] for m in members]
        if i == 0:
            layer = {"W": jnp.concatenate(ws, axis=1), "b": jnp.concatenate(bs)}
        elif i < last:
            layer = {"W": block_diag(*ws), "b": jnp.concatenate(bs)}
        else:
            layer = {"W": jnp.concatenate(ws, axis=0) / k, "b": sum(bs) / k}
        params.append(layer)
    wide = dataclasses.replace(pcfg, hidden=tuple(h * k for h in pcfg.hidden))
    return wide, members[0].replace(params=params)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--variant", action="append", default=None)
    p.add_argument("--pool", action="append", default=[], metavar="RUN_DIR[:FIRST_ITERATION]")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    pools = [parse_pool(text) for text in args.pool]

    import jax
    import jax.numpy as jnp
    import numpy as np

    from apexjax import aggregator, policy
    from apexjax.episodes import episode_fns, episode_returns
    from apexjax.run import build_task
    from apexjax.train import load_checkpoint
    from benchmarks._common import save_results
    from experiments.checkpoint_evals import episode_keys

    def rows(dataset, first: int = 0) -> list[np.ndarray]:
        """(obs, actions, source, iteration) of a dataset's rows of iteration ``first`` on."""
        m = int(dataset.size)
        cols = [np.asarray(x[:m]) for x in (dataset.obs, dataset.actions, dataset.source)]
        cols.append(np.asarray(dataset.iteration[:m]))
        return [x[cols[3] >= first] for x in cols]

    cfg, st = load_checkpoint(args.run_dir)
    task = build_task(cfg)
    parts, pooled = [rows(st.dataset)], []
    for run_dir, first in pools:
        other_cfg, other = load_checkpoint(run_dir)
        if other_cfg.task != cfg.task:
            raise SystemExit(f"--pool {run_dir}: task {other_cfg.task!r}, not {cfg.task!r}")
        part = rows(other.dataset, first)
        if not part[0].shape[0]:
            raise SystemExit(f"--pool {run_dir}: no rows of iteration {first} or later")
        parts.append(part)
        pooled.append(
            {
                "run_dir": str(run_dir),
                "first_iteration": first,
                "iteration": int(other.iteration),
                "rows": int(part[0].shape[0]),
                "expert_rows": int(np.sum(part[2] == aggregator.SOURCE_EXPERT)),
            }
        )
    obs, act, src, it = (np.concatenate(x) for x in zip(*parts, strict=True))
    n = obs.shape[0]
    obs, act = jnp.asarray(obs), jnp.asarray(act)

    keys = episode_keys(args.episodes)

    def evaluate(pcfg: policy.PolicyConfig, pst: policy.PolicyState) -> dict[str, object]:
        """The policy alone on the same fresh episodes, run exactly as
        ``experiments/checkpoint_evals.py`` runs a checkpoint (the policy an argument of the
        jitted episodes, not a constant: XLA may fuse a constant network differently, and a
        last-bit change grows over 1,000 steps of a chaotic task)."""
        alone = episode_fns(dataclasses.replace(cfg, policy=pcfg), task).policy
        ep = jax.jit(jax.vmap(alone, in_axes=(None, 0)))(pst, keys)
        ret = np.asarray(episode_returns(ep.costs), dtype=float)
        return {
            "return": float(np.mean(ret)),
            "return_median": float(np.median(ret)),
            "returns": [round(float(x), 2) for x in ret],
            "success": float(jnp.mean(ep.success)) if task.has_success else None,
        }

    own = evaluate(cfg.policy, st.policy)
    results: dict[str, object] = {
        "run_dir": str(args.run_dir),
        "iteration": int(st.iteration),
        "rows": n,
        "expert_rows": int(np.sum(src == aggregator.SOURCE_EXPERT)),
        "episodes": args.episodes,
        "pooled": pooled,
        "checkpoint_policy": own,
        "variants": [],
    }
    print(
        f"{args.run_dir}: {n} rows; checkpoint policy return {own['return']:.2f} "
        f"(median {own['return_median']:.2f}) success {own['success']}"
    )
    low, high = task.action_low, task.action_high
    for name, over, steps in map(parse_variant, args.variant or DEFAULT_VARIANTS):
        over = dict(over)
        members = int(over.pop("ensemble", 1))
        since = int(over.pop("since", 0))
        seed = int(over.pop("seed", 0))
        norm_since = int(over.pop("norm_since", since))
        lr_end = over.pop("lr_end", None)
        up = float(over.pop("up", 1.0))
        up_col = int(over.pop("up_col", 0))
        up_below = float(over.pop("up_below", 0.0))
        pcfg = dataclasses.replace(cfg.policy, **over)
        sources = (src == aggregator.SOURCE_EXPERT) if "expert" in name else np.ones(n, bool)
        keep = sources & (it >= since)
        if not keep.any():
            raise SystemExit(f"--variant {name!r}: no rows of iteration {since} or later")
        o, a = obs[keep], act[keep]
        if not up > 0:
            raise SystemExit(f"--variant {name!r}: up must be > 0, got {up}")
        if not 0 <= up_col < o.shape[1]:
            raise SystemExit(f"--variant {name!r}: up_col {up_col} not in [0, {o.shape[1]})")
        low_rows = o[:, up_col] < up_below
        cdf = jnp.cumsum(jnp.where(low_rows, up, 1.0))
        cdf = cdf / cdf[-1]
        upweighted = int(jnp.sum(low_rows)) if up != 1.0 else 0

        def sample(k, o=o, a=a, bs=pcfg.batch_size, cdf=cdf, up=up):
            if up == 1.0:
                i = jax.random.randint(k, (bs,), 0, o.shape[0])
            else:  # row i with probability proportional to its weight
                u = jax.random.uniform(k, (bs,))
                i = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), o.shape[0] - 1)
            return o[i], a[i], jnp.ones(bs)

        t0 = time.perf_counter()
        chunks = 1 if lr_end is None else LR_CHUNKS
        if steps % chunks:
            raise SystemExit(f"--variant {name!r}: lr_end needs STEPS divisible by {LR_CHUNKS}")
        fit = jax.jit(
            lambda s, k, pcfg=pcfg, sample=sample, steps=steps // chunks: policy.train_steps(
                pcfg, s, k, sample, steps
            )
        )
        fitted, losses = [], []
        for m in range(members):
            base = 1000 * seed + 2 * m
            pst = policy.init(pcfg, jax.random.PRNGKey(base), obs.shape[1], low, high)
            pst = policy.update_normalizer(pst, obs[sources & (it >= norm_since)])
            chunk_keys = jax.random.split(jax.random.PRNGKey(base + 1), chunks)
            for c in range(chunks):
                if lr_end is not None:
                    lr = pcfg.learning_rate * (lr_end / pcfg.learning_rate) ** (c / (chunks - 1))
                    pst = pst.replace(opt_state=set_learning_rate(pst.opt_state, lr))
                pst, loss = fit(pst, chunk_keys[c] if chunks > 1 else jax.random.PRNGKey(base + 1))
            fitted.append(pst)
            losses.append(float(loss))
        loss = float(np.mean(losses))
        fit_s = time.perf_counter() - t0
        if members > 1:
            pcfg, pst = ensemble(pcfg, fitted)
        full = float(policy.loss(pcfg, pst.params, pst.normalizer, obs, act, None, low, high))
        res = evaluate(pcfg, pst)
        row = dict(
            name=name,
            policy=over,
            ensemble=members,
            since_iteration=since,
            normalizer_since_iteration=norm_since,
            sgd_steps=steps,
            rows=int(keep.sum()),
            train_loss=loss,
            all_rows_loss=full,
            fit_s=fit_s,
            seed=seed,
            lr_end=lr_end,
            upweight=up,
            upweighted_rows=upweighted,
            policy_return=res["return"],
            policy_return_median=res["return_median"],
            policy_returns=res["returns"],
            policy_success=res["success"],
        )
        results["variants"].append(row)  # type: ignore[union-attr]
        print(
            f"{name}: train loss {loss:.4f}, all rows {full:.4f}, fit {fit_s:.0f} s, "
            f"policy return {res['return']:.2f} (median {res['return_median']:.2f}), "
            f"success {res['success']}",
            flush=True,
        )
    if args.out is not None:
        save_results(args.out, results, "experiments/refit.py", argv or sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

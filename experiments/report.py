"""Table and plots from ``experiments/ablation.py`` results.

    python experiments/report.py experiments/results/*.json --md experiments/results/ablation.md

Writes a Markdown table (mean ± std over seeds of the final evaluation) and, per task, next
to the first JSON, a PNG ``TASK.png`` with the learning curves (expert and policy-alone return per iteration, and λ).

The "policy / expert" column is the policy's share of the expert's improvement over the
untrained policy, ``(R_policy − R_0) / (R_expert − R_0)``, with R_0 the untrained policy's
return in the same evaluation episodes: 1.0 means as good as the expert, 0 no better than
the untrained network. It is used because these returns can be negative, where a plain
``R_policy / R_expert`` would read backwards.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np


def _ms(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    return f"{xs.mean():.1f} ± {xs.std():.1f}"


def share(res: dict) -> np.ndarray:
    """Per seed ``(R_policy − R_0) / (R_expert − R_0)`` of the final evaluation."""
    fe, ie = res["final_eval"], res["initial_eval"]
    r0 = np.asarray(ie["policy_return"], float)
    rp = np.asarray(fe["policy_return"], float)
    re = np.asarray(fe["expert_return"], float)
    return (rp - r0) / np.maximum(re - r0, 1e-9)


def merge(results: list[dict]) -> list[dict]:
    """One entry per task, the methods of every file for that task together (files may
    each hold some of the methods, e.g. when methods ran as parallel processes)."""
    by_task: dict[str, dict] = {}
    for r in results:
        t = by_task.setdefault(
            r["task"],
            {
                "task": r["task"],
                "seeds": r["seeds"],
                "environment": r["environment"],
                "commands": [],
                "methods": {},
            },
        )
        t["commands"].append(r["command"])
        t["methods"].update(r["methods"])
    return list(by_task.values())


def table(results: list[dict]) -> str:
    head = (
        "| task | method | policy return | expert return | policy / expert | "
        "policy success | expert success | final λ | sim. steps / seed | train s |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        n = len(r["seeds"])
        for m, res in r["methods"].items():
            fe = res["final_eval"]
            sh = share(res)
            lam = res["history"][-1]["lambda_mean"]
            ps = (
                _ms(np.asarray(fe["policy_success"]) * 100) + " %"
                if "policy_success" in fe
                else "–"
            )
            es = (
                _ms(np.asarray(fe["expert_success"]) * 100) + " %"
                if "expert_success" in fe
                else "–"
            )
            rows.append(
                f"| {r['task']} | {m} | {_ms(fe['policy_return'])} | {_ms(fe['expert_return'])} "
                f"| {sh.mean():.2f} ± {sh.std():.2f} | {ps} | {es} | {np.mean(lam):.2f} "
                f"| {res['simulated_steps_all_seeds'] / n:.3g} | {res['train_s']:.0f} |"
            )
    return head + "\n".join(rows) + "\n"


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axl) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (m, res) in enumerate(result["methods"].items()):
        c = f"C{i}"
        it = np.arange(1, len(res["history"]) + 1)
        pol = np.array([h["policy_return"] for h in res["history"]], float)
        exp = np.array([h["expert_return"] for h in res["history"]], float)
        lam = np.array([h["lambda_mean"] for h in res["history"]], float)
        ax.plot(it, pol.mean(1), c, label=f"{m}: policy alone")
        ax.fill_between(it, pol.min(1), pol.max(1), color=c, alpha=0.15)
        ax.plot(it, exp.mean(1), c, ls="--", label=f"{m}: expert")
        axl.plot(it, lam.mean(1), c, label=m)
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("episode return")
    ax.set_title(f"{result['task']} ({len(result['seeds'])} seeds; band = min..max)")
    ax.legend(fontsize=7)
    axl.set_xlabel("outer iteration")
    axl.set_ylabel("λ (mean over the iteration)")
    axl.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=pathlib.Path)
    p.add_argument("--md", type=pathlib.Path, default=None, help="write the table here too")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    results = merge([json.loads(f.read_text()) for f in args.results])
    md = table(results)
    cmds = "\n".join(f"    {c}" for r in results for c in r["commands"])
    hw = sorted({r["environment"]["hardware"] for r in results})
    text = f"{md}\nMeasured on {'; '.join(hw)} by:\n\n{cmds}\n"
    print(text)
    if args.md:
        args.md.write_text(text)
    if not args.no_plot:
        folder = args.results[0].parent
        for r in results:
            plot(r, folder / f"{r['task']}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

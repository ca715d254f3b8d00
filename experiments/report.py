"""Table and plots from ``experiments/ablation.py`` results.

    python experiments/report.py experiments/results/*.json --md experiments/results/ablation.md

Writes a Markdown table per task (mean ± std over seeds of the final evaluation) and, per
task, next to the first JSON (or in ``--plot-dir``), a PNG ``TASK.png``: the policy alone per
iteration, the expert per iteration (does fixed-λ guidance drag the expert down toward the
untrained policy early on, and does APEX's adaptive λ avoid it?), λ, and success. The
planner-only methods (``icem``, ``cem``) appear as horizontal reference lines.

Columns: the policy alone and the expert (the planner each method trains with, guided
where the method guides it; for planner-only methods, the planner itself), return and
success; "policy / expert" is the policy's share of the expert's improvement over the
untrained policy, ``(R_policy − R_0) / (R_expert − R_0)``, with R_0 the untrained policy's
return in the same evaluation episodes: 1.0 means as good as the expert, 0 no better than
the untrained network (used because returns can be negative, where a plain
``R_policy / R_expert`` would read backwards); "n/a" where the expert itself is no better
than the untrained policy. Simulated steps are the planner's imagined
control steps, per seed: training (every expert and DAgger episode) and the final
evaluation's expert episodes. Wall-clock is for all seeds at once (they run vmapped in one
call), compile apart. Planner-only methods have no policy and no training: "–".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

PLANNER_ONLY = ("icem", "cem")
DASH = "–"
_COLORS = {"icem": "k", "cem": "0.55", "bc": "C0", "dagger": "C1", "fixed": "C3", "apex": "C2"}
_LABELS = {
    "icem": "iCEM expert alone",
    "cem": "plain CEM, equal budget",
    "bc": "BC only",
    "dagger": "DAgger only",
    "fixed": "fixed λ",
    "apex": "APEX (adaptive λ)",
}


def _ms(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    return f"{xs.mean():.1f} ± {xs.std():.1f}"


def _pct(xs) -> str:
    return _ms(np.asarray(xs, float) * 100) + " %"


def is_planner_only(method: str, res: dict) -> bool:
    """A method that trains no policy (older result files lack the flag)."""
    return bool(res.get("planner_only", method in PLANNER_ONLY))


def share(res: dict) -> np.ndarray:
    """Per seed ``(R_policy − R_0) / (R_expert − R_0)`` of the final evaluation; NaN where
    the expert is not better than the untrained policy by at least 1 % of ``|R_0|`` (an
    expert dragged down to the policy: the ratio would be noise over noise). A seed whose
    run never measured its untrained policy (``None``: e.g. BC, which has no DAgger
    phase) counts ``R_0`` as 0."""
    fe, ie = res["final_eval"], res["initial_eval"]
    r0 = np.asarray([0.0 if x is None else x for x in ie["policy_return"]], float)
    rp = np.asarray(fe["policy_return"], float)
    re = np.asarray(fe["expert_return"], float)
    gain = re - r0
    ok = gain > 0.01 * np.maximum(np.abs(r0), 1e-6)
    return np.where(ok, (rp - r0) / np.where(ok, gain, 1.0), np.nan)


def _share_text(s: np.ndarray) -> str:
    ok = np.isfinite(s)
    if not ok.any():
        return "n/a"
    text = f"{s[ok].mean():.2f} ± {s[ok].std():.2f}"
    return text if ok.all() else f"{text} ({ok.sum()}/{ok.size} seeds)"


def _secs(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return DASH
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


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
                "preset": r.get("preset"),
                "reduction_vs_paper": r.get("reduction_vs_paper"),
                "eval_episodes": r.get("eval_episodes"),
                "commands": [],
                "methods": {},
            },
        )
        t["commands"].append(r["command"])
        t["methods"].update(r["methods"])
    return list(by_task.values())


def _planner_steps(res: dict) -> int | None:
    """Simulated steps per control step of a method's planner, from its config (result
    files written before the field existed)."""
    planner = res.get("config", {}).get("planner")
    if not planner:
        return None
    from apexjax.planning import icem

    return icem.simulated_per_step(icem.ICEMConfig(**planner))


def _seed_text(r: dict) -> str:
    """``"3 seeds"``, or the seeds of each method where methods ran different seeds (a
    paper-budget table: one run per method and seed)."""
    per = {m: res.get("seeds", r["seeds"]) for m, res in r["methods"].items()}
    if all(list(s) == list(r["seeds"]) for s in per.values()):
        return f"{len(r['seeds'])} seeds ({', '.join(map(str, r['seeds']))})"
    return "seeds " + "; ".join(f"{m} {', '.join(map(str, s))}" for m, s in per.items())


def _budget_line(r: dict) -> str:
    red = r.get("reduction_vs_paper")
    preset = r.get("preset")
    text = f"{r['task']}: {_seed_text(r)}"
    if r.get("eval_episodes"):
        text += f", {r['eval_episodes']} evaluation episodes per seed"
    text += f"; budget: preset {preset}" if preset else "; budget: no preset"
    if red:
        from apexjax.presets import compare_budget

        text += (
            f", {compare_budget(red['per_control_step'], 'simulated steps per control step')}"
            f" and {compare_budget(red['per_run'], 'per training run')}"
        )
    return text + "."


def table(results: list[dict]) -> str:
    """Markdown: one row per task and method (see the module docstring for the columns)."""
    head = (
        "| task | method | policy return | policy success | expert return | expert success "
        "| policy / expert | final λ | planner steps / control step "
        "| sim. steps / seed: training | sim. steps / seed: evaluation "
        "| compile s | training s | evaluation s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        for m, res in r["methods"].items():
            n = len(res.get("seeds", r["seeds"]))  # a paper table's methods differ
            fe = res["final_eval"]
            alone = is_planner_only(m, res)
            es = _pct(fe["expert_success"]) if "expert_success" in fe else DASH
            if alone:
                pr = ps = sh = lam = train_sims = train_s = DASH
            else:
                s = share(res)
                pr = _ms(fe["policy_return"])
                ps = _pct(fe["policy_success"]) if "policy_success" in fe else DASH
                sh = _share_text(s)
                lam = (
                    f"{np.mean(res['history'][-1]['lambda_mean']):.2f}" if res["history"] else DASH
                )
                train_sims = f"{res['simulated_steps_all_seeds'] / n:.3g}"
                train_s = _secs(res["train_s"])
            per_step = res.get("planner_simulated_per_step") or _planner_steps(res)
            eval_sims = res.get("eval_simulated_steps_all_seeds")
            rows.append(
                f"| {r['task']} | {m} | {pr} | {ps} | {_ms(fe['expert_return'])} | {es} | {sh} "
                f"| {lam} | {per_step if per_step is not None else DASH} | {train_sims} "
                f"| {DASH if eval_sims is None else f'{eval_sims / n:.3g}'} "
                f"| {_secs(res['compile_s'])} | {train_s} | {_secs(res.get('eval_s'))} |"
            )
    return head + "\n".join(rows) + "\n"


def expert_table(results: list[dict]) -> str:
    """Markdown: the expert's return per iteration (mean over seeds) of every training
    method, against the planner alone and the untrained policy: does guidance drag it down?"""
    out = []
    for r in results:
        trained = {m: res for m, res in r["methods"].items() if not is_planner_only(m, res)}
        n_it = max([len(res["history"]) for res in trained.values()] + [0])
        if not n_it:
            continue
        head = " | ".join(str(i) for i in range(1, n_it + 1))
        out.append(f"| {r['task']}: expert return per iteration | {head} |")
        out.append("|---" * (n_it + 1) + "|")
        for m, res in trained.items():
            curve = _curve(res, "expert_return")
            cells = [] if curve is None else [f"{v:.1f}" for v in curve.mean(1)]
            cells += [DASH] * (n_it - len(cells))
            out.append(f"| {m} | {' | '.join(cells)} |")
        refs = [(m, res) for m, res in r["methods"].items() if is_planner_only(m, res)]
        r0 = [
            x
            for res in r["methods"].values()
            for x in res["initial_eval"].get("policy_return", [])
            if x is not None
        ]
        notes = [f"{m} alone {np.mean(res['final_eval']['expert_return']):.1f}" for m, res in refs]
        if r0:
            notes.append(f"untrained policy alone {np.mean(r0):.1f}")
        if notes:
            out.append(f"\nAt the evaluation: {', '.join(notes)}.")
        out.append("")
    return "\n".join(out)


def _curve(res: dict, key: str) -> np.ndarray | None:
    """``[iterations, seeds]`` of metric ``key`` (None where absent)."""
    if not res["history"] or key not in res["history"][0]:
        return None
    return np.array([h[key] for h in res["history"]], float).reshape(len(res["history"]), -1)


def plot(result: dict, path: pathlib.Path) -> None:
    """``path``: 2 × 2 panels: policy alone, expert quality, λ, success per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    methods = result["methods"]
    trained = {m: res for m, res in methods.items() if not is_planner_only(m, res)}
    alone = {m: res for m, res in methods.items() if is_planner_only(m, res)}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (ax_pol, ax_exp), (ax_lam, ax_succ) = axes
    last = max([len(res["history"]) for res in trained.values()] + [1])
    # paper-table files (experiments/paper_table.py) carry every checkpoint's evaluation on
    # the same fresh episodes: the curve of record where present
    evaluated = bool(trained) and all(
        res["history"] and "policy_return_eval" in res["history"][0] for res in trained.values()
    )

    def references(ax, key: str, scale: float = 1.0) -> None:
        """Planner-only methods, and the untrained policy, as horizontal lines."""
        for m, res in alone.items():
            if key in res["final_eval"]:
                y = scale * np.mean(res["final_eval"][key])
                ax.axhline(y, color=_COLORS.get(m, "k"), ls=":", lw=1.6, label=_LABELS.get(m, m))
        if key == "expert_return":
            r0 = [
                x
                for res in methods.values()
                for x in res["initial_eval"].get("policy_return", [])
                if x is not None
            ]
            if r0:
                ax.axhline(np.mean(r0), color="0.3", ls="-.", lw=1, label="untrained policy alone")

    def band(ax, it, y, color, **kw) -> None:
        ax.plot(it, y.mean(1), color=color, **kw)
        ax.fill_between(it, y.min(1), y.max(1), color=color, alpha=0.12, lw=0)

    for m, res in trained.items():
        c, label = _COLORS.get(m), _LABELS.get(m, m)
        it = np.arange(1, len(res["history"]) + 1)
        pol = _curve(res, "policy_return_eval" if evaluated else "policy_return")
        if pol is not None:
            band(ax_pol, it, pol, c, marker="o", ms=3, label=label)
        exp = _curve(res, "expert_return")
        if exp is not None:
            guided = m in ("fixed", "apex")
            band(
                ax_exp,
                it,
                exp,
                c,
                marker="o" if guided else None,
                ms=4,
                lw=2.2 if guided else 1.0,
                ls="-" if guided else "--",
                label=label + ("" if guided else " (unguided)"),
            )
        lam = _curve(res, "lambda_mean")
        if lam is not None:
            ax_lam.plot(it, lam.mean(1), color=c, marker="o", ms=3, label=label)
        for key, ls in (("policy_success", "-"), ("expert_success", "--")):
            y = _curve(res, key)
            if y is not None:
                who = "policy" if key.startswith("policy") else "expert"
                ax_succ.plot(it, 100 * y.mean(1), color=c, ls=ls, label=f"{label}: {who}")

    # the policy alone is judged against the planner alone (and the expert column of the table)
    references(ax_pol, "expert_return")
    references(ax_exp, "expert_return")
    references(ax_succ, "expert_success", scale=100.0)
    ax_pol.set_title(
        "policy alone (no planner): return per iteration"
        + (
            f"\n(each checkpoint on the same {result.get('eval_episodes')} fresh episodes)"
            if evaluated
            else ""
        )
    )
    ax_exp.set_title(
        "expert quality: the (guided) planner's return in each iteration's\n"
        "training episodes (iteration 1 plans with the untrained policy)"
    )
    ax_lam.set_title("guidance weight λ (mean over the iteration)")
    ax_succ.set_title("success at the last step (solid: policy alone, dashed: expert)")
    for ax in (ax_pol, ax_exp, ax_lam, ax_succ):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("outer iteration")
        ax.set_xlim(0.8, last + 0.2)
        ax.grid(alpha=0.3)
    ax_pol.set_ylabel("episode return")
    ax_exp.set_ylabel("episode return")
    ax_succ.set_ylabel("success %")
    ax_succ.set_ylim(-5, 105)
    for ax in (ax_pol, ax_exp, ax_lam):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if ax_succ.lines:
        ax_succ.legend(fontsize=6, ncol=2)
    else:
        fig.delaxes(ax_succ)
    preset = result.get("preset")
    fig.suptitle(
        f"{result['task']}: {_seed_text(result)}\n(line: mean, band: min..max)"
        + (f", preset {preset}" if preset else "")
        + "; dotted: planner alone at the evaluation"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=pathlib.Path)
    p.add_argument("--md", type=pathlib.Path, default=None, help="write the table here too")
    p.add_argument(
        "--plot-dir",
        type=pathlib.Path,
        default=None,
        help="where TASK.png goes (default: beside the first JSON)",
    )
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    results = merge([json.loads(f.read_text()) for f in args.results])
    md = table(results)
    budgets = "\n".join(_budget_line(r) for r in results)
    cmds = "\n".join(f"    {c}" for r in results for c in r["commands"])
    hw = sorted({r["environment"]["hardware"] for r in results})
    experts = expert_table(results)
    text = f"{md}\n{budgets}\n\n{experts}\nMeasured on {'; '.join(hw)} by:\n\n{cmds}\n"
    print(text)
    if args.md:
        args.md.write_text(text)
    if not args.no_plot:
        folder = args.plot_dir or args.results[0].parent
        folder.mkdir(parents=True, exist_ok=True)
        for r in results:
            plot(r, folder / f"{r['task']}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

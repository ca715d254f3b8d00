"""Learning-curve plot of a run: expert vs policy return (and success), and λ, per iteration.

Needs matplotlib (the ``plot`` extra); :func:`learning_curve` returns None without it, so
a run never fails for want of a plot. Drawn with the non-interactive Agg canvas, no
global matplotlib state is changed.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

__all__ = ["learning_curve"]

log = logging.getLogger(__name__)


def learning_curve(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> pathlib.Path | None:
    """Writes the PNG of a run's metrics rows (``metrics.jsonl``); returns its path.

    Panels: expert and policy-alone return per iteration; success rates where the task has
    them; the guidance weight (``lambda_mean``, and ``next_lambda`` where logged).
    Returns None (and logs why) when matplotlib is missing or there are no rows.
    """
    if not rows:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.info("matplotlib not installed: no learning-curve plot (pip install 'apexjax[plot]')")
        return None
    it = [r["iteration"] for r in rows]
    has_success = "policy_success" in rows[0]
    panels = 3 if has_success else 2
    fig = Figure(figsize=(4.2 * panels, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels)

    ax = axes[0]
    for key, label in (
        ("expert_return", "expert (guided planner)"),
        ("policy_return", "policy alone"),
    ):
        if key in rows[0]:
            ax.plot(it, [r[key] for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if has_success:
        ax = axes[1]
        for key, label in (("expert_success", "expert"), ("policy_success", "policy alone")):
            ax.plot(it, [100 * r[key] for r in rows], marker="o", ms=3, label=label)
        ax.set_xlabel("iteration")
        ax.set_ylabel("success (%)")
        ax.set_ylim(-5, 105)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax = axes[-1]
    ax.plot(
        it, [r.get("lambda_mean", float("nan")) for r in rows], marker="o", ms=3, label="λ used"
    )
    if "next_lambda" in rows[0]:
        ax.plot(it, [r["next_lambda"] for r in rows], ls="--", label="λ next")
    ax.set_xlabel("iteration")
    ax.set_ylabel("guidance weight λ")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    path = pathlib.Path(path)
    fig.savefig(path, dpi=110)
    return path

"""Benchmarks behind ``apexjax bench``: every figure is measured in one run, side by side.

Each section module (``planner``, ``policy``, ``learning``, ``compile``) exposes
``run(task: str, *, quick: bool = False, seed: int = 0) -> Section``. A section is a titled
list of :class:`Figure` rows, each naming its unit and, where there is one, the baseline it
is compared against and the ratio measured in the same run. :func:`to_markdown` renders
sections as the table the README quotes. Importing this package imports no JAX.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = [
    "Figure",
    "Section",
    "figure_dict",
    "section_from_dict",
    "section_to_dict",
    "to_markdown",
]


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured number.

    Attributes:
      name: what was measured, e.g. ``"time per control step"``.
      value: apexjax's figure.
      unit: unit of ``value`` and ``baseline`` (``"ms"``, ``"steps/s"``, ``"s"``...).
      baseline: the alternative's figure measured in the same run, if any.
      baseline_name: what the baseline is, e.g. ``"NumPy iCEM, native MuJoCo, 2 threads"``.
      ratio: how many times better apexjax is (baseline/value for times,
        value/baseline for rates); None without a baseline.
      note: one line of context (batch, devices, threshold...).
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    ratio: float | None = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled group of figures plus free-form details (configs, raw timings)."""

    title: str
    figures: list[Figure]
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def figure_dict(f: Figure) -> dict[str, Any]:
    """JSON-ready dict of a figure."""
    return dataclasses.asdict(f)


def section_to_dict(section: Section) -> dict[str, Any]:
    """JSON-ready dict of a :class:`Section`."""
    return dict(
        title=section.title,
        figures=[figure_dict(f) for f in section.figures],
        details=section.details,
    )


def section_from_dict(d: dict[str, Any]) -> Section:
    """Inverse of :func:`section_to_dict`."""
    return Section(d["title"], [Figure(**f) for f in d["figures"]], d.get("details", {}))


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a >= 1e5:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}" if a < 10 else f"{x:.1f}"
    return f"{x:.3g}"


def to_markdown(sections: list[Section], header: str = "") -> str:
    """Markdown: one table per section (figure | apexjax | baseline | ratio | unit | note)."""
    out = [header.rstrip() + "\n"] if header else []
    for s in sections:
        out.append(f"### {s.title}\n")
        out.append("| figure | apexjax | baseline | baseline value | ratio | unit | note |")
        out.append("|---|---|---|---|---|---|---|")
        for f in s.figures:
            ratio = "" if f.ratio is None else f"{_fmt(f.ratio)}×"
            out.append(
                f"| {f.name} | {_fmt(f.value)} | {f.baseline_name or ''} | {_fmt(f.baseline)} "
                f"| {ratio} | {f.unit} | {f.note} |"
            )
        out.append("")
    return "\n".join(out)

"""Helpers shared by the benchmark scripts: hardware/version info, JSON output, timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

from apexjax.bench.hardware import environment_info, write_json

__all__ = ["environment_info", "write_json", "save_results", "time_call", "Timing"]


class Timing(dict):
    """``{"compile_s": first call incl. compilation, "run_s": median of later calls,
    "runs_s": every later call}`` (seconds, each call waited on with block_until_ready)."""


def save_results(path: Any, results: dict[str, Any], script: str, argv: list[str]) -> None:
    """Writes ``results`` to ``path`` as JSON with the command that made them (``python
    SCRIPT ARGV``) and the machine's environment, and says where."""
    results["command"] = f"python {script} " + " ".join(argv)
    results["environment"] = environment_info()
    write_json(path, results)
    print(f"wrote {path}")


def time_call(fn: Callable[..., Any], *args: Any, repeats: int = 5) -> tuple[Any, Timing]:
    """Times ``fn(*args)``: the first call (compile + run) apart from ``repeats`` later ones.

    Returns ``(last output, Timing)``. Works for jitted JAX functions (outputs are waited
    on) and plain Python/native calls alike.
    """
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t0)
    return out, Timing(compile_s=first, run_s=statistics.median(runs), runs_s=runs)

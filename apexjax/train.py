"""The Python driver around :func:`apexjax.loop.make_train_step`: iterate, log, checkpoint.

A run directory holds ``config.json`` (the resolved config), ``metrics.jsonl`` and
``metrics.csv`` (one row per iteration), ``checkpoints/`` (the full :class:`TrainState`
through orbax, so a resumed run continues exactly as an uninterrupted one would) and
``summary.json``. Nothing here runs inside jit.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp

from apexjax import aggregator
from apexjax.configs import ConfigError, to_dict
from apexjax.guidance import GuidanceConfig
from apexjax.loop import (
    TrainConfig,
    TrainState,
    build_task,
    init_train_state,
    make_train_step,
    metrics_to_python,
    place_state,
)
from apexjax.planning.icem import ICEMConfig
from apexjax.policy import PolicyConfig

__all__ = ["config_from_dict", "load_checkpoint", "train"]

log = logging.getLogger(__name__)

_SUB = {"planner": ICEMConfig, "policy": PolicyConfig, "guidance": GuidanceConfig}


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`apexjax.configs.to_dict` for :class:`TrainConfig`."""
    kw = dict(d)
    for name, cls in _SUB.items():
        if name in kw:
            sub = dict(kw[name])
            if name == "policy" and "hidden" in sub:
                sub["hidden"] = tuple(sub["hidden"])
            kw[name] = cls(**sub)
    try:
        return TrainConfig(**kw)
    except TypeError as e:
        raise ConfigError(f"config.json: {e}") from None


def _checkpointer() -> ocp.Checkpointer:
    return ocp.StandardCheckpointer()


def _latest_step(ckpt_dir: pathlib.Path) -> int | None:
    steps = [int(p.name) for p in ckpt_dir.glob("[0-9]*") if p.name.isdigit()]
    return max(steps) if steps else None


def load_checkpoint(run_dir: str | pathlib.Path) -> tuple[TrainConfig, TrainState]:
    """The config and the latest full training state of ``run_dir``.

    Raises:
      ConfigError: no run there, or its config or checkpoint cannot be read (the message
        says which file).
    """
    run_dir = pathlib.Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"{run_dir}: not a run directory (no config.json)")
    try:
        config = config_from_dict(json.loads(cfg_path.read_text()))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path}: corrupt JSON ({e})") from None
    step = _latest_step(run_dir / "checkpoints")
    if step is None:
        raise ConfigError(f"{run_dir}: no checkpoint under checkpoints/")
    task = build_task(config)
    target = jax.eval_shape(lambda: init_train_state(config, task))
    path = (run_dir / "checkpoints" / str(step)).absolute()
    try:
        state = _checkpointer().restore(path, target)
    except Exception as e:  # orbax raises many kinds; the user needs the path and the cause
        raise ConfigError(f"{path}: cannot restore checkpoint ({type(e).__name__}: {e})") from None
    return config, state


def _save(run_dir: pathlib.Path, state: TrainState, step: int) -> None:
    ckpt = _checkpointer()
    path = (run_dir / "checkpoints" / str(step)).absolute()
    ckpt.save(path, state, force=True)
    ckpt.wait_until_finished()


def _append_metrics(run_dir: pathlib.Path, row: dict[str, float]) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    csv_path = run_dir / "metrics.csv"
    new = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def train(
    config: TrainConfig,
    run_dir: str | pathlib.Path,
    *,
    resume: bool = False,
    checkpoint_every: int = 1,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Runs ``config.iterations`` outer iterations; returns the summary dict.

    Args:
      config: the run's config (ignored for the run's settings when resuming: the saved
        config is used, except ``iterations``, which may be raised to train longer).
      run_dir: created if missing. A run directory that already holds a run is never
        overwritten: pass ``resume=True`` to continue it.
      resume: continue from the latest checkpoint.
      checkpoint_every: save the full state every this many iterations (and at the end).
      callback: called with ``(iteration, metrics)`` after each iteration (progress display).
    """
    run_dir = pathlib.Path(run_dir)
    if resume:
        saved, state = load_checkpoint(run_dir)
        config = dataclasses.replace(saved, iterations=max(config.iterations, saved.iterations))
        start = int(state.iteration)
        log.info("resuming %s at iteration %d", run_dir, start)
    else:
        if (run_dir / "config.json").exists():
            raise ConfigError(
                f"{run_dir}: already holds a run; use resume to continue it or pick a new directory"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        state = None
        start = 0
    (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=2))
    task = build_task(config)
    if state is None:
        state = init_train_state(config, task)
    log.info(
        "task %s: dataset %d rows, %.1f MiB on device (allocated once)",
        config.task,
        config.dataset_capacity,
        aggregator.nbytes(state.dataset) / 2**20,
    )
    step = make_train_step(config, task)
    state = place_state(config, state)
    t_compile = time.perf_counter()
    compiled = step.lower(state).compile()
    compile_s = time.perf_counter() - t_compile
    log.info("compiled the training step in %.1f s", compile_s)
    row: dict[str, float] = {}
    wall = 0.0
    for it in range(start, config.iterations):
        t0 = time.perf_counter()
        state, metrics = compiled(state)
        row = metrics_to_python(metrics)
        dt = time.perf_counter() - t0
        wall += dt
        row = {"iteration": it + 1, "seconds": dt, **row}
        _append_metrics(run_dir, row)
        if callback is not None:
            callback(it + 1, row)
        if (it + 1) % checkpoint_every == 0 or it + 1 == config.iterations:
            _save(run_dir, state, it + 1)
    summary = {
        "task": config.task,
        "iterations": config.iterations,
        "compile_seconds": compile_s,
        "train_seconds_this_session": wall,
        "final": row,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

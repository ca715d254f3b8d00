"""The Python driver around :func:`apexjax.loop.make_train_step`: iterate, log, checkpoint.

A run directory holds ``config.json`` (the resolved config), ``metrics.jsonl`` and
``metrics.csv`` (one row per iteration), ``checkpoints/`` (the full :class:`TrainState`
through orbax, so a resumed run continues exactly as an uninterrupted one would),
``summary.json`` + ``summary.md`` (final metrics), ``metadata.json`` (how the run was
configured: the physics backend it runs on and, where given, its preset) and
``learning_curve.png`` (expert vs policy return and success, and λ, per iteration; needs
matplotlib). Nothing here runs inside jit.

The state is replicated on every device, so a checkpoint restores onto any device count
that divides ``num_envs`` (:func:`load_checkpoint`, ``train(..., resume=True,
num_devices=N)``). In a multi-process run (:mod:`apexjax.distributed`) every process calls
:func:`train` alike; process 0 alone writes the run files and logs, the checkpoints are saved
by all processes together (orbax) and the run directory must be on a filesystem they share.
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

from apexjax import aggregator, distributed, plots
from apexjax.configs import ConfigError, to_dict
from apexjax.guidance import GuidanceConfig
from apexjax.loop import (
    TrainConfig,
    TrainState,
    build_task,
    init_train_state,
    make_train_step,
    metrics_to_python,
    physics_backend,
    place_state,
    replicated_sharding,
)
from apexjax.planning.icem import ICEMConfig
from apexjax.policy import PolicyConfig
from apexjax.sharding import make_mesh

__all__ = ["config_from_dict", "load_checkpoint", "summary_table", "train", "with_devices"]

log = logging.getLogger(__name__)

_SUB = {"planner": ICEMConfig, "policy": PolicyConfig, "guidance": GuidanceConfig}


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`apexjax.configs.to_dict` for :class:`TrainConfig`."""
    kw = dict(d)
    if "task_options" in kw:
        kw["task_options"] = tuple(kw["task_options"])
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


def with_devices(config: TrainConfig, num_devices: int) -> TrainConfig:
    """``config`` continued on ``num_devices`` devices (a resumed or evaluated run).

    Raises:
      ConfigError: ``num_devices`` is not an int >= 1 or does not divide the run's
        ``num_envs`` (the message lists the counts that do).
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ConfigError(f"num_devices: expected an int >= 1, got {num_devices!r}")
    if config.num_envs % num_devices:
        divisors = [d for d in range(1, config.num_envs + 1) if config.num_envs % d == 0]
        raise ConfigError(
            f"num_devices: the run's num_envs={config.num_envs} episodes cannot be split "
            f"evenly over {num_devices} devices; allowed: {', '.join(map(str, divisors))}"
        )
    return dataclasses.replace(config, num_devices=num_devices)


def _read_config(run_dir: pathlib.Path) -> TrainConfig:
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"{run_dir}: not a run directory (no config.json)")
    try:
        return config_from_dict(json.loads(cfg_path.read_text()))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path}: corrupt JSON ({e})") from None


def load_checkpoint(
    run_dir: str | pathlib.Path, num_devices: int | None = None
) -> tuple[TrainConfig, TrainState]:
    """The config and the latest full training state of ``run_dir``.

    Args:
      run_dir: a run directory written by :func:`train`.
      num_devices: lay the state out for this many devices (replicated on each, as
        :func:`apexjax.loop.place_state` does), whatever count the run was saved with; the
        returned config says ``num_devices`` accordingly. ``None``: the config as saved and
        the state on this process's first device (inspection, export; pass it through
        ``place_state`` before a multi-device step).

    Raises:
      ConfigError: no run there, its config or checkpoint cannot be read (the message says
        which file), or ``num_devices`` does not divide the run's ``num_envs``.
    """
    run_dir = pathlib.Path(run_dir)
    config = _read_config(run_dir)
    if num_devices is not None:
        config = with_devices(config, num_devices)
    step = _latest_step(run_dir / "checkpoints")
    if step is None:
        raise ConfigError(f"{run_dir}: no checkpoint under checkpoints/")
    if num_devices is None or num_devices == 1:
        sharding: jax.sharding.Sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    else:
        sharding = replicated_sharding(config)
    task = build_task(config)
    # Restore straight into the target layout: orbax reads every array whole onto each
    # device, so the device count the checkpoint was written from does not matter.
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        jax.eval_shape(lambda: init_train_state(config, task)),
    )
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
    num_devices: int | None = None,
    checkpoint_every: int = 1,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs ``config.iterations`` outer iterations; returns the summary dict.

    Args:
      config: the run's config (ignored for the run's settings when resuming: the saved
        config is used, except ``iterations``, which may be raised to train longer).
      run_dir: created if missing. A run directory that already holds a run is never
        overwritten: pass ``resume=True`` to continue it.
      resume: continue from the latest checkpoint.
      num_devices: the device count to run on instead of ``config.num_devices`` (new run)
        or the saved run's count (resume: the replicated state restores onto any count that
        divides ``num_envs``; the same count continues bit for bit, another one to float32
        rounding, as the split program is compiled differently).
      checkpoint_every: save the full state every this many iterations (and at the end).
      callback: called with ``(iteration, metrics)`` after each iteration (progress
        display); on process 0 only in a multi-process run.
      on_stage: called with the name of each stage as it starts ("compiling the training
        step", "iteration 3", "saving checkpoint 3"), on every process: a progress
        watchdog's heartbeat (:class:`apexjax.watchdog.Watchdog`).
      metadata: JSON-ready facts about how a new run was configured (the CLI passes its
        preset); written to ``metadata.json`` with the physics backend the run uses, and
        repeated in ``summary.json``. A resumed run keeps the one it was started with;
        ``summary.json`` names the backend of the session that wrote it.

    Raises:
      ConfigError: the run directory is unusable, or ``num_devices`` does not fit the run
        or the devices at hand; before anything compiles.
    """
    run_dir = pathlib.Path(run_dir)
    primary = distributed.is_primary()
    stage = on_stage or (lambda name: None)
    if resume:
        saved_on = _read_config(run_dir).num_devices
        n = saved_on if num_devices is None else num_devices
        saved, state = load_checkpoint(run_dir, n)
        if primary and n != saved_on:
            log.info("%s: saved on %d device(s), continuing on %d", run_dir, saved_on, n)
        config = dataclasses.replace(saved, iterations=max(config.iterations, saved.iterations))
        start = int(state.iteration)
        if primary:
            log.info("resuming %s at iteration %d", run_dir, start)
    else:
        if num_devices is not None:
            config = with_devices(config, num_devices)
        if (run_dir / "config.json").exists():
            raise ConfigError(
                f"{run_dir}: already holds a run; use resume to continue it or pick a new directory"
            )
        state = None
        start = 0
    if config.num_devices > 1 or jax.process_count() > 1:
        make_mesh(config.num_devices)  # enough devices, shared evenly by the processes
    task = build_task(config)
    # Every process has read the run directory before process 0 writes to it.
    distributed.barrier("apexjax.train: run directory checked")
    if primary:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=2))
        if not resume:
            meta = {**(metadata or {}), "backend": physics_backend(config)}
            (run_dir / "metadata.json").write_text(json.dumps(meta, indent=2))
    if state is None:
        state = init_train_state(config, task)
    if primary:
        log.info(
            "task %s: dataset %d rows, %.1f MiB on device (allocated once)",
            config.task,
            config.dataset_capacity,
            aggregator.nbytes(state.dataset) / 2**20,
        )
    step = make_train_step(config, task)
    state = place_state(config, state)
    stage("compiling the training step")
    t_compile = time.perf_counter()
    compiled = step.lower(state).compile()
    compile_s = time.perf_counter() - t_compile
    if primary:
        log.info("compiled the training step in %.1f s", compile_s)
    row: dict[str, float] = {}
    wall = 0.0
    for it in range(start, config.iterations):
        stage(f"iteration {it + 1}")
        t0 = time.perf_counter()
        state, metrics = compiled(state)
        row = metrics_to_python(metrics)
        dt = time.perf_counter() - t0
        wall += dt
        row = {"iteration": it + 1, "seconds": dt, **row}
        if primary:
            _append_metrics(run_dir, row)
            if callback is not None:
                callback(it + 1, row)
        if (it + 1) % checkpoint_every == 0 or it + 1 == config.iterations:
            stage(f"saving checkpoint {it + 1}")
            _save(run_dir, state, it + 1)  # every process: orbax saves collectively
    summary = {
        "task": config.task,
        "backend": physics_backend(config),
        "iterations": config.iterations,
        "num_devices": config.num_devices,
        "num_processes": jax.process_count(),
        "compile_seconds": compile_s,
        "train_seconds_this_session": wall,
        "final": row,
    }
    if primary:
        rows = (
            [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
            if (run_dir / "metrics.jsonl").exists()
            else []
        )
        png = plots.learning_curve(rows, run_dir / "learning_curve.png", config.task)
        if (run_dir / "metadata.json").exists():
            summary["metadata"] = json.loads((run_dir / "metadata.json").read_text())
        summary["plot"] = None if png is None else png.name
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        (run_dir / "summary.md").write_text(summary_table(summary))
    stage("done")
    return summary


_SUMMARY_ROWS = (
    ("expert_return", "expert (guided planner) return"),
    ("policy_return", "policy alone return"),
    ("expert_success", "expert success"),
    ("policy_success", "policy alone success"),
    ("best_expert_return", "best expert return so far"),
    ("lambda_mean", "guidance weight λ (last iteration)"),
    ("next_lambda", "guidance weight λ (next iteration)"),
    ("loss", "imitation loss"),
    ("dataset_size", "dataset rows"),
    ("simulated_steps", "simulated steps (last iteration)"),
)


def summary_table(summary: dict[str, Any]) -> str:
    """Markdown table of a run's final metrics (``summary.md``; the CLI prints it)."""
    final = summary.get("final", {})
    lines = [
        f"{summary['task']}: {final.get('iteration', 0)} of {summary['iterations']} iterations, "
        f"{summary['num_devices']} device(s)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, label in _SUMMARY_ROWS:
        if key in final:
            v = final[key]
            text = f"{100 * v:.0f} %" if key.endswith("success") else f"{v:.4g}"
            lines.append(f"| {label} | {text} |")
    meta = summary.get("metadata") or {}
    if "preset" in meta:
        text = str(meta["preset"])
        red = meta.get("reduction_vs_paper")
        if red:
            text += (
                f" ({red['per_control_step']:.3g}× fewer simulated steps per control step "
                f"than paper, {red['per_run']:.3g}× per run)"
            )
        lines.append(f"| preset | {text} |")
    if "backend" in summary:
        lines.append(f"| physics backend | {summary['backend']} |")
    lines.append(f"| compile | {summary['compile_seconds']:.1f} s |")
    lines.append(f"| training this session | {summary['train_seconds_this_session']:.1f} s |")
    return "\n".join(lines) + "\n"

"""The outer loop, once: :func:`fit` trains a :class:`~apexjax.loop.TrainState` for a
number of iterations and returns it with the per-iteration metrics, touching no disk.

Everything that trains calls it: :func:`apexjax.train.train` (which adds the run
directory: metrics files, checkpoints, summary, through ``callback``), the ablation and the
learning benchmarks. As Brax's ``train`` returns its params, :func:`fit` returns the
trained state; a caller keeps what it needs from ``history``::

    from apexjax.driver import fit
    from apexjax.presets import train_config

    result = fit(train_config("cartpole_swingup", "smoke"))
    result.state.policy  # the trained policy
    result.history[-1]["policy_return"]

Several seeds side by side (``seeds=[0, 1, 2]``) run as one jitted step vmapped over
the seeds' states: the states carry a leading seed axis and every metric is a list, one
value per seed.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from apexjax import distributed
from apexjax.configs import ConfigError
from apexjax.envs.base import Task
from apexjax.loop import (
    TrainConfig,
    TrainState,
    build_task,
    init_train_state,
    make_train_step,
    metrics_to_python,
    place_state,
)

__all__ = ["Callback", "FitResult", "fit", "init_states"]

log = logging.getLogger(__name__)

#: ``callback(iteration, row, state) -> stop``: called after each iteration with its
#: number (1-based, counted over the whole run), the metrics row (Python floats, or
#: lists of floats with ``seeds``; ``"iteration"`` and ``"seconds"`` included) and the
#: state after it. Returning True ends the loop after this iteration.
Callback = Callable[[int, dict[str, Any], TrainState], "bool | None"]


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      state: the trained state (with ``seeds``: stacked along a leading seed axis).
      history: one metrics row per iteration run by this call, as passed to the callback.
      compile_seconds: compiling the training step (0 where nothing was left to run, or
        where an earlier :func:`fit` in this process compiled the same step for the same
        task and state shapes).
      train_seconds: the iterations themselves, compile excluded.
    """

    state: TrainState
    history: list[dict[str, Any]]
    compile_seconds: float
    train_seconds: float


def _check_seeds(seeds: Sequence[int] | None) -> tuple[int, ...] | None:
    if seeds is None:
        return None
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"fit: seeds must be a non-empty list of ints >= 0, got {list(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"fit: seeds must differ, got {list(seeds)}")
    return seeds


def init_states(config: TrainConfig, task: Task, seeds: Sequence[int]) -> TrainState:
    """The initial states of ``seeds`` (each as :func:`~apexjax.loop.init_train_state` of the
    config with that seed), stacked along a leading axis and placed for ``config``."""
    states = [init_train_state(dataclasses.replace(config, seed=s), task) for s in seeds]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    return place_state(config, stacked)


# compiled training steps by (config, task, vmapped, the state's shapes and placement):
# repeated fits of one run (seeds one after another, a benchmark's repeats, a resumed
# loop in the same process) compile once. A few entries: each holds its task alive.
_COMPILED: collections.OrderedDict[Any, Any] = collections.OrderedDict()
_COMPILED_MAX = 4


def _compiled_step(
    config: TrainConfig, task: Task, vmapped: bool, state: TrainState
) -> tuple[Any, bool]:
    """``(compiled step, whether it was compiled now)``."""
    leaves, treedef = jax.tree.flatten(state)
    key = (
        config,
        task,
        vmapped,
        treedef,
        tuple((x.shape, str(x.dtype), getattr(x, "sharding", None)) for x in leaves),
    )
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key], False
    step = make_train_step(config, task)
    if vmapped:
        step = jax.jit(jax.vmap(step))
    compiled = step.lower(state).compile()
    _COMPILED[key] = compiled
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return compiled, True


def _row_to_python(metrics: dict[str, Any], vmapped: bool) -> dict[str, Any]:
    if not vmapped:
        return metrics_to_python(metrics)
    host = jax.device_get(metrics)
    return {k: np.asarray(v, np.float64).reshape(-1).tolist() for k, v in host.items()}


def fit(
    config: TrainConfig,
    state: TrainState | None = None,
    *,
    task: Task | None = None,
    iterations: int | None = None,
    seeds: Sequence[int] | None = None,
    callback: Callback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> FitResult:
    """Trains for the outer iterations from ``state``'s own count up to ``iterations``.

    Args:
      config: the training config.
      state: where to start (a restored checkpoint, an earlier :func:`fit`'s state);
        default: a fresh :func:`~apexjax.loop.init_train_state` (with ``seeds``: one per
        seed, stacked). It is placed on the config's devices first.
      task: the built task (default :func:`~apexjax.loop.build_task` of the config); pass
        it to reuse one across calls.
      iterations: the target count of iterations done (default ``config.iterations``);
        the loop runs from ``state.iteration`` up to it, so a resumed state continues.
      seeds: train these seeds side by side in one vmapped step (states stacked).
      callback: see :data:`Callback`: a run directory's writer, a progress display, an
        early stop (a time budget, a return threshold).
      on_stage: called with each stage's name as it starts ("compiling the training
        step", "iteration 3"): a progress display or a watchdog's heartbeat.

    Returns:
      :class:`FitResult` (state, history, compile and training seconds).

    Raises:
      ConfigError: bad ``iterations`` or ``seeds``, a ``state`` already past the target,
        or seeds given with a state that is not stacked for them.
    """
    seeds = _check_seeds(seeds)
    target = config.iterations if iterations is None else iterations
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise ConfigError(f"fit: iterations must be an int >= 0, got {target!r}")
    task = build_task(config) if task is None else task
    if state is None:
        state = (
            init_train_state(config, task) if seeds is None else init_states(config, task, seeds)
        )
    done_per_seed = np.asarray(jax.device_get(state.iteration)).reshape(-1)
    if seeds is not None and done_per_seed.shape[0] != len(seeds):
        raise ConfigError(
            f"fit: the state holds {done_per_seed.shape[0]} stacked seed(s), seeds gives "
            f"{len(seeds)}"
        )
    if seeds is None and np.ndim(jax.device_get(state.iteration)) != 0:
        raise ConfigError("fit: a stacked state (one per seed) needs seeds=")
    start = int(done_per_seed.max())
    if start > target:
        raise ConfigError(
            f"fit: iterations={target} is below the {start} iterations the state already did"
        )
    state = place_state(config, state)
    stage = on_stage or (lambda name: None)
    primary = distributed.is_primary()
    history: list[dict[str, Any]] = []
    compile_s = train_s = 0.0
    if start == target:
        return FitResult(state, history, compile_s, train_s)
    stage("compiling the training step")
    t0 = time.perf_counter()
    compiled, fresh = _compiled_step(config, task, seeds is not None, state)
    compile_s = time.perf_counter() - t0 if fresh else 0.0
    if primary and fresh:
        log.info("compiled the training step in %.1f s", compile_s)
    for it in range(start, target):
        stage(f"iteration {it + 1}")
        t0 = time.perf_counter()
        state, metrics = compiled(state)
        row = _row_to_python(metrics, seeds is not None)
        dt = time.perf_counter() - t0
        train_s += dt
        row = {"iteration": it + 1, "seconds": dt, **row}
        history.append(row)
        if callback is not None and callback(it + 1, row, state):
            break
    return FitResult(state, history, compile_s, train_s)

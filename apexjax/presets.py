"""Named training budgets ("presets") per task, as plain data, and their cost in simulated steps.

A preset is a dict of dotted :class:`~apexjax.loop.TrainConfig` overrides, the same keys
``apexjax train --set`` takes (``"planner.population": 40``, ``"iterations": 20``, ...).
The command line applies a preset first and ``--set`` on top (:func:`train_config`, through
:func:`apexjax.configs.apply_overrides`, the one override parser).

Presets (every task of :data:`PRESET_TASKS` has all three):

``paper``
    The full budget, meant for a GPU. The iCEM values are the authors' low-budget
    configuration from the iCEM paper (REFERENCE.md): N = 40, I = 3, K = 10, h = 30,
    γ = 1.25, ξ = 0.3, α = 0.1, init_std = 0.5, keep/shift elites and the mean action on,
    and the task's own colored-noise β (:func:`apexjax.envs.planner_beta`, which
    :class:`~apexjax.loop.TrainConfig` takes by default) and episode length. The noise
    has the authors' scale (``noise_normalization="colorednoise"``, the ``colorednoise``
    package's marginal std, 1.1-1.2 at β >= 2.5): measured on sparse Fetch at this budget it
    succeeded in 7 of 16 episodes against 3 of 16 with unit variance (the same start states,
    two seeds; docs/experiments.md). ``cpu`` and the library's own default keep unit variance.
    The APEX paper's outer-loop values are NOT known (its method section could not be
    obtained): outer iterations, episodes per iteration, SGD steps, network size and
    dataset capacity here are this project's documented choice, not the paper's. The
    choice: ``num_envs`` expert + ``num_envs`` DAgger episodes per iteration with
    ``num_envs · T`` between 1,600 and 8,000 rows per phase (more, shorter episodes on the
    short tasks, which also fills an accelerator better); 20-25 iterations (15 or fewer on
    the small benchmark tasks); 1,000 SGD steps of batch 256 per iteration; the MLP 2 × 256
    of the reference recipe; a dataset that holds every row of the run (nothing is
    overwritten). Guidance: one policy candidate, ``progress`` λ with λ0 = 1 (the project
    default).
``cpu``
    A reduced budget a 2-core CPU finishes in tens of minutes per method (3 seeds at once):
    iCEM N = 16, K = 4 (h = 20 unless noted), 2 + 2 episodes per iteration, 5 iterations,
    300 SGD steps; for the 1000-step tasks a shorter episode. :func:`reduction` gives the
    factor of simulated steps against ``paper``, per control step and per run. The paper's
    tasks are the exception (:data:`CPU_SLOW_TASKS`): MJX runs them at 16-140 physics steps/s
    (door, fetch) and a few thousand (humanoid) on 2 cores, so their ``cpu`` preset is sized
    to finish in about an hour per seed and method; for door and fetch that is a check of the
    whole pipeline on the real model, far too small to solve the task.
``smoke``
    The least that runs every piece once (1 iteration, short episodes, tiny planner):
    checks an installation end to end; its numbers mean nothing.

Per control step (:func:`apexjax.planning.icem.simulated_per_step` of the training planner,
one policy candidate): paper 3,090 simulated steps; cpu 820 (h = 20) or 615 (h = 15),
3.8× and 5.0× fewer. Per run, :func:`reduction` and :func:`budget_table` give the figures.

This module imports no JAX at import time: names and overrides can be checked before
anything starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from apexjax.configs import ConfigError, apply_overrides

if TYPE_CHECKING:
    from apexjax.loop import TrainConfig
    from apexjax.planning.icem import ICEMConfig

__all__ = [
    "CPU_SLOW_TASKS",
    "PRESET_TASKS",
    "Budget",
    "apply_overrides",
    "budget",
    "budget_table",
    "cem_at_equal_budget",
    "compare_budget",
    "config_reduction",
    "override_items",
    "plan_config",
    "preset_budget",
    "preset_names",
    "preset_overrides",
    "reduction",
    "sub_overrides",
    "train_config",
]

# A task's colored-noise β and its episode length are facts of the task, kept in its
# config class (apexjax.envs.planner_beta, apexjax.envs.default_episode_length); a
# preset is a budget and carries neither.


def _episode_length(task: str) -> int:
    from apexjax.envs import default_episode_length  # lazy: no JAX at import

    return default_episode_length(task)


# The iCEM paper's low-budget planner (REFERENCE.md), β added per task.
_PAPER_PLANNER: dict[str, object] = {
    "planner.population": 40,
    "planner.iterations": 3,
    "planner.elites": 10,
    "planner.horizon": 30,
    "planner.decay": 1.25,
    "planner.keep_fraction": 0.3,
    "planner.momentum": 0.1,
    "planner.init_std": 0.5,
    "planner.keep_elites": True,
    "planner.shift_elites": True,
    "planner.use_mean_actions": True,
    "planner.execute": "best",
}

# APEX's outer loop at the paper budget: this project's choice (the paper's is unknown).
# task -> (iterations, num_envs per phase)
_PAPER_LOOP: dict[str, tuple[int, int]] = {
    "humanoid_standup": (20, 8),
    "door": (25, 16),
    "fetch_pick_and_place": (25, 32),
    "halfcheetah_running": (20, 8),
    "cartpole_swingup": (15, 16),
    "pendulum_swingup": (10, 16),
    "reacher": (15, 32),
}

# The measured CPU budget of experiments/results/cartpole_swingup.json (iCEM N=16, K=4,
# h=20; 2+2 episodes; 5 iterations; 300 SGD steps), shared by every task's "cpu" preset.
_CPU_COMMON: dict[str, object] = {
    "planner.population": 16,
    "planner.elites": 4,
    "planner.horizon": 20,
    "iterations": 5,
    "num_envs": 2,
    "sgd_steps": 300,
}

# A tiny planner for the tasks that MJX runs slowest on CPU.
_TINY_PLANNER: dict[str, object] = {
    "planner.population": 8,
    "planner.elites": 2,
    "planner.iterations": 2,
    "iterations": 1,
}

#: The "cpu" preset of the paper's tasks, sized from their measured MJX rates on the 2-core
#: CPU (benchmarks/results/env_throughput_paper_tasks.json and env_throughput_humanoid.json:
#: door 137, fetch 16, humanoid ~2,600 physics steps/s) to about an hour per seed and
#: method. Door: 6 episodes of 50 steps x 160 simulated x frame skip 5 = 240k physics
#: steps; Fetch: 6 x 10 x 80 x 20 = 96k; both check the pipeline on the real model and
#: cannot solve the task. Humanoid: 3 iterations of 4 episodes of 200 steps (of 1000) at h=15.
#: Every key overrides :data:`_CPU_COMMON`.
CPU_SLOW_TASKS: dict[str, dict[str, object]] = {
    "humanoid_standup": {"episode_length": 200, "planner.horizon": 15, "iterations": 3},
    "door": {**_TINY_PLANNER, "episode_length": 50, "planner.horizon": 10},
    "fetch_pick_and_place": {**_TINY_PLANNER, "episode_length": 10, "planner.horizon": 5},
}

# Tuned "cpu" differences of the other tasks (from the measured MJX throughput in the README).
_CPU_TUNED: dict[str, dict[str, object]] = {
    # 1000-step episodes at ~25k MJX steps/s: 200 steps (10 s of running) keep an
    # iteration of 3 seeds near a minute on 4 host devices.
    "halfcheetah_running": {"episode_length": 200},
    "cartpole_swingup": {},
    "pendulum_swingup": {},
    "reacher": {},
}

_SMOKE: dict[str, object] = {
    "planner.population": 8,
    "planner.elites": 2,
    "planner.horizon": 8,
    "planner.iterations": 2,
    "iterations": 1,
    "num_envs": 2,
    "episode_length": 20,
    "sgd_steps": 20,
    "dataset_capacity": 1_000,
    "policy.hidden": (32, 32),
    "policy.batch_size": 32,
}


def _rows(overrides: Mapping[str, object], task: str) -> int:
    """Dataset rows a run of ``overrides`` collects: iterations x 2 phases x num_envs x T."""
    T = int(overrides.get("episode_length", 0)) or _episode_length(task)  # type: ignore[arg-type]
    return int(overrides["iterations"]) * 2 * int(overrides["num_envs"]) * T  # type: ignore[arg-type]


def _paper(task: str) -> dict[str, object]:
    iterations, num_envs = _PAPER_LOOP[task]
    p: dict[str, object] = {
        **_PAPER_PLANNER,
        "episode_length": 0,
        "iterations": iterations,
        "num_envs": num_envs,
        "sgd_steps": 1000,
        "policy.hidden": (256, 256),
        "policy.batch_size": 256,
        "policy_candidates": 1,
        "candidate_noise": 0.1,
        "guidance.weight": 1.0,
        # the authors' noise scale: 7/16 vs 3/16 successes on sparse Fetch (module docstring)
        "planner.noise_normalization": "colorednoise",
    }
    p["dataset_capacity"] = _rows(p, task)
    return p


def _cpu(task: str) -> dict[str, object]:
    p: dict[str, object] = {**_PAPER_PLANNER, **_CPU_COMMON}
    p.update(CPU_SLOW_TASKS.get(task, _CPU_TUNED.get(task, {})))
    p.setdefault("episode_length", 0)
    p["dataset_capacity"] = _rows(p, task)
    return p


def _smoke(task: str) -> dict[str, object]:
    del task
    return dict(_SMOKE)


#: The tasks with presets (each has ``paper``, ``cpu`` and ``smoke``).
PRESET_TASKS: tuple[str, ...] = tuple(_PAPER_LOOP)
_BUILDERS = {"paper": _paper, "cpu": _cpu, "smoke": _smoke}


def preset_names(task: str) -> tuple[str, ...]:
    """The preset names of ``task`` (empty for a task without presets)."""
    return tuple(_BUILDERS) if task in PRESET_TASKS else ()


def preset_overrides(task: str, name: str) -> dict[str, object]:
    """A copy of preset ``name`` of ``task``: ``{"planner.population": 40, ...}``.

    Raises:
      ConfigError: no such task or preset; the message lists what is allowed.
    """
    if task not in PRESET_TASKS:
        raise ConfigError(
            f"--preset: task {task!r} has no presets; tasks with presets: {', '.join(PRESET_TASKS)}"
        )
    if name not in _BUILDERS:
        raise ConfigError(
            f"--preset: unknown preset {name!r} for task {task!r}; allowed: {', '.join(_BUILDERS)}"
        )
    return _BUILDERS[name](task)


def override_items(overrides: Mapping[str, object]) -> list[str]:
    """``{"planner.population": 40}`` -> ``["planner.population=40"]``: the ``--set``
    strings that say the same (tuples as JSON lists, booleans as true/false)."""
    items = []
    for key, v in overrides.items():
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, (tuple, list)):
            text = json.dumps(list(v))
        else:
            text = str(v)
        items.append(f"{key}={text}")
    return items


def sub_overrides(overrides: Mapping[str, object], group: str) -> dict[str, object]:
    """The ``group.FIELD`` entries of ``overrides`` as ``{FIELD: value}`` (e.g. the
    planner part of a preset for ``apexjax plan``)."""
    prefix = group + "."
    return {k[len(prefix) :]: v for k, v in overrides.items() if k.startswith(prefix)}


def train_config(
    task: str,
    preset: str | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
) -> TrainConfig:
    """The :class:`~apexjax.loop.TrainConfig` of ``task``: its defaults (the task's own
    planner β), preset ``preset`` if given, then ``overrides`` on top (``"key=value"``
    strings as ``apexjax train --set`` takes them, or a mapping of typed values), validated
    in one build; nothing compiles. ``apexjax train`` builds its config with this, so
    Python and the command line get the same defaults.

    Raises:
      ConfigError: an unknown preset (the message lists the task's presets), or a bad
        override.
    """
    from apexjax.loop import TrainConfig

    config = TrainConfig(task=task)
    if preset is not None:
        config = apply_overrides(config, preset_overrides(task, preset))
    return apply_overrides(config, overrides)


def plan_config(
    task: str,
    preset: str | None = None,
    overrides: Iterable[str] = (),
    *,
    cem: bool = False,
) -> ICEMConfig:
    """The planner ``apexjax plan`` runs on ``task``: iCEM with the task's own β, the
    planner budget of preset ``preset`` if given, then ``overrides`` (``"field=value"``
    strings, as ``apexjax plan --set`` takes them). With ``cem``: the authors' plain CEM,
    at the preset's simulated steps per control step (:func:`cem_at_equal_budget`) if a
    preset is given, else :func:`apexjax.planning.icem.cem_config`'s defaults.

    Raises:
      ConfigError: an unknown task or preset, or a bad override.
    """
    from apexjax import envs
    from apexjax.configs import parse_overrides
    from apexjax.planning import icem

    envs.check_task(task)
    base = icem.ICEMConfig(beta=envs.planner_beta(task))
    if preset is not None:
        budget = sub_overrides(preset_overrides(task, preset), "planner")
        base = dataclasses.replace(base, **budget)  # a preset is a budget: β stays the task's
        if cem:
            base = cem_at_equal_budget(base)
    elif cem:
        base = icem.cem_config()
    return parse_overrides(icem.ICEMConfig, overrides, base=base)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Simulated control steps a training config spends (the planner's imagined steps).

    Attributes:
      simulated_per_step: one guided ``plan`` call
        (:func:`apexjax.planning.icem.simulated_per_step`, policy candidates included).
      episode_length: control steps per episode.
      episodes_per_iteration: expert + DAgger episodes of one iteration.
      iterations: outer iterations.
    """

    simulated_per_step: int
    episode_length: int
    episodes_per_iteration: int
    iterations: int

    @property
    def simulated_per_iteration(self) -> int:
        """Planner steps of one outer iteration (evaluation episodes not counted)."""
        return self.simulated_per_step * self.episode_length * self.episodes_per_iteration

    @property
    def simulated_per_run(self) -> int:
        """Planner steps of the whole training run."""
        return self.simulated_per_iteration * self.iterations


def budget(config: TrainConfig, episode_length: int | None = None) -> Budget:
    """The :class:`Budget` of ``config``. ``episode_length`` overrides the task's own
    length where the config says 0 (the task's own)."""
    from apexjax.planning import icem

    T = config.episode_length or episode_length or _episode_length(config.task)
    phases = int(config.expert_data) + int(config.dagger)
    return Budget(
        simulated_per_step=icem.simulated_per_step(config.expert_planner),
        episode_length=int(T),
        episodes_per_iteration=phases * config.num_envs,
        iterations=config.iterations,
    )


def _build(task: str, overrides: Mapping[str, object]) -> TrainConfig:
    return train_config(task, overrides=overrides)


def preset_budget(task: str, name: str) -> Budget:
    """The :class:`Budget` of preset ``name`` of ``task`` (builds the config only)."""
    return budget(_build(task, preset_overrides(task, name)))


def _fewer(a: Budget, b: Budget) -> dict[str, float]:
    return {
        "per_control_step": b.simulated_per_step / a.simulated_per_step,
        "per_run": b.simulated_per_run / a.simulated_per_run,
    }


def reduction(task: str, name: str, reference: str = "paper") -> dict[str, float]:
    """How many times fewer simulated steps preset ``name`` spends than ``reference``:
    ``{"per_control_step": ..., "per_run": ...}`` (> 1 means cheaper)."""
    return _fewer(preset_budget(task, name), preset_budget(task, reference))


def compare_budget(ratio: float, what: str, reference: str = "paper") -> str:
    """A :func:`reduction` ratio in words: ``"3.77× fewer WHAT than REFERENCE"``, ``"2× more
    WHAT than REFERENCE"`` below 1, ``"as many WHAT as REFERENCE"`` within 0.5 %."""
    if abs(ratio - 1.0) <= 0.005:
        return f"as many {what} as {reference}"
    if ratio > 1.0:
        return f"{ratio:.3g}× fewer {what} than {reference}"
    return f"{1.0 / ratio:.3g}× more {what} than {reference}"


def config_reduction(
    config: TrainConfig, episode_length: int | None = None, reference: str = "paper"
) -> dict[str, float] | None:
    """:func:`reduction` of any config (a preset with ``--set`` on top) against preset
    ``reference`` of its task; ``None`` where the task has no such preset."""
    if reference not in preset_names(config.task):
        return None
    return _fewer(budget(config, episode_length), preset_budget(config.task, reference))


def budget_table(tasks: list[str] | None = None) -> str:
    """Markdown table of every preset's budget and its reduction against ``paper``."""
    lines = [
        "| task | preset | sim. steps / control step | episode | episodes / iteration | "
        "iterations | sim. steps / run | fewer than paper: per step | per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks or list(PRESET_TASKS):
        for name in preset_names(task):
            b = preset_budget(task, name)
            r = reduction(task, name)
            untuned = (
                " (pipeline check)"
                if name == "cpu" and task in ("door", "fetch_pick_and_place")
                else ""
            )
            lines.append(
                f"| {task} | {name}{untuned} | {b.simulated_per_step:,} | {b.episode_length} | "
                f"{b.episodes_per_iteration} | {b.iterations} | {b.simulated_per_run:.3g} | "
                f"{r['per_control_step']:.2f}× | {r['per_run']:.3g}× |"
            )
    return "\n".join(lines) + "\n"


def cem_at_equal_budget(config: ICEMConfig, tolerance: float = 0.05) -> ICEMConfig:
    """Plain CEM (:func:`apexjax.planning.icem.cem_config`) that simulates as many steps per
    control step as ``config``, within ``tolerance``: the same iterations, elites, horizon,
    ``init_std`` and execution, no population decay, and the population that matches
    :func:`~apexjax.planning.icem.simulated_per_step` best (extra candidates excluded:
    ``config``'s count is taken with ``num_extra_candidates = 0``).

    Raises:
      ConfigError: no population matches within ``tolerance``, or it would leave fewer
        than 2 samples per elite.
    """
    from apexjax.planning import icem

    target = icem.simulated_per_step(dataclasses.replace(config, num_extra_candidates=0))
    per_row = config.iterations * config.horizon
    population = max(1, round(target / per_row))
    if population < 2 * config.elites:
        raise ConfigError(
            f"cem_at_equal_budget: {target} simulated steps per control step give CEM a "
            f"population of {population}, below 2 x elites = {2 * config.elites}"
        )
    cem = icem.cem_config(
        population=population,
        decay=1.0,
        iterations=config.iterations,
        elites=config.elites,
        horizon=config.horizon,
        init_std=config.init_std,
        execute=config.execute,
        cost_aggregation=config.cost_aggregation,
    )
    got = icem.simulated_per_step(cem)
    if abs(got - target) > tolerance * target or not math.isfinite(got):
        raise ConfigError(
            f"cem_at_equal_budget: CEM simulates {got} steps per control step against iCEM's "
            f"{target}, more than {tolerance:.0%} apart"
        )
    return cem

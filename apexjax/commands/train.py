"""``apexjax train``: APEX training on a task, into a run directory (``--resume`` continues).

Devices and processes:

- ``--devices N``: this process splits the episodes over N of its devices (on CPU the
  command creates N host devices, unless ``XLA_FLAGS`` already says how many). With
  ``--resume`` the run continues on this count, whatever count it was saved with.
  Without it: the config's ``num_devices`` (new run), the saved count (resume).
- Several processes (one per host), started alike on every host::

      apexjax train --coordinator HOST0:PORT --num-processes P --process-id I --devices N ...

  or ``--distributed auto`` inside a cluster job (SLURM, Open MPI, Kubernetes, Cloud TPU),
  where JAX reads all three from the environment. The run spans N x P devices (without
  ``--devices``: all local devices of every process, unless ``--set num_devices`` says);
  process 0 prints progress and writes the run directory, which every process must see
  (shared filesystem) for the collective checkpoints.

Resuming (``--resume``) continues the run's saved config up to its saved target; only
``--set iterations=N`` (the target) and ``--set dataset_window=N`` (SGD's rows from then
on) change it (other ``--set`` items and ``--preset`` are refused). To change anything
else, start a new run from the old one's checkpoint:
``--init-from OLD_RUN_DIR [--init-checkpoint N] [--init-policy-only]`` takes its policy
and dataset (:func:`apexjax.train.init_state_from`) and trains them with the new config.
Progress goes to stderr: a tqdm bar on a terminal, one line per stage and iteration
otherwise (CI logs); the result JSON goes to stdout.

At the end (process 0 of a single-process run; ``--no-render`` skips it) the command films
the run as ``apexjax render RUN_DIR`` does, small (:data:`apexjax.commands.render.TRAIN_RENDER`),
into ``RUN_DIR/render``; without offscreen OpenGL that is one warning line, never a failure.
``--tensorboard [DIR]`` also writes every metrics row as TensorBoard scalars
(:mod:`apexjax.tensorboard`; default ``RUN_DIR/tensorboard``, appended to on ``--resume``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import sys
import threading
from typing import Any, TextIO

from apexjax.configs import (
    ConfigError,
)

#: ``--tensorboard`` without DIR
_IN_RUN_DIR = object()


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="cartpole_swingup", help="task name (see apexjax.envs)")
    p.add_argument("--run-dir", type=pathlib.Path, default=None, help="default: runs/train-TASK")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its newest intact checkpoint, up to its saved "
        "target (--set iterations=N: to N instead; other --set items are refused)",
    )
    p.add_argument(
        "--init-from",
        type=pathlib.Path,
        default=None,
        metavar="RUN_DIR",
        help="start this new run from another run's checkpoint: its policy and dataset, with "
        "this run's own config (e.g. another guidance weight after some iterations); not with "
        "--resume",
    )
    p.add_argument(
        "--init-checkpoint",
        default="last",
        metavar="N",
        help="which checkpoint of --init-from: last (default), best or an iteration number",
    )
    p.add_argument(
        "--init-policy-only",
        action="store_true",
        help="with --init-from: take the policy alone and start with an empty dataset",
    )
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="named budget of the task (apexjax.presets: paper = the full budget for a GPU, "
        "cpu = reduced for a 2-core CPU, smoke = a plumbing check); --set overrides apply on "
        "top of it",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="split the episodes over N devices of this process (sets num_devices to N times "
        "the process count; on CPU the command creates N host devices itself); with --resume, "
        "continue on this many devices instead of the saved count",
    )
    p.add_argument(
        "--hang-timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="stop with exit status 3, the stage and every thread's stack when no progress "
        "(compile done, iteration done, checkpoint written) arrives for this long; 0 turns "
        "it off (default 3600: generous for the longest CPU compiles)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="TrainConfig override, repeatable; sub-configs as planner.FIELD, policy.FIELD, "
        "guidance.FIELD (e.g. --set iterations=5 --set planner.population=64)",
    )
    p.add_argument(
        "--tensorboard",
        nargs="?",
        const=_IN_RUN_DIR,  # no DIR: RUN_DIR/tensorboard (not a str: argparse keeps it)
        default=None,
        type=pathlib.Path,
        metavar="DIR",
        help="also write each metrics row as TensorBoard scalars (step = iteration) into DIR "
        "(default: RUN_DIR/tensorboard; a resumed run appends there); needs the tensorboard "
        "extra: pip install 'apexjax[tensorboard]'",
    )
    p.add_argument(
        "--no-render",
        dest="render",
        action="store_false",
        help="do not film the finished run (by default the policy alone and the expert from "
        "the same start, small, into RUN_DIR/render as `apexjax render RUN_DIR` names them)",
    )
    g = p.add_argument_group(
        "several processes",
        "one process per host through jax.distributed; give every process the same "
        "--coordinator and --num-processes and its own --process-id, or --distributed auto",
    )
    g.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="address where process 0 serves the coordination service (reachable by all)",
    )
    g.add_argument("--num-processes", type=int, metavar="P", help="processes in the run")
    g.add_argument("--process-id", type=int, metavar="I", help="this process, 0..P-1")
    g.add_argument(
        "--distributed",
        choices=["auto"],
        default=None,
        help="auto: JAX reads coordinator, process count and id from the cluster's environment "
        "(SLURM, Open MPI, Kubernetes, Cloud TPU); opt-in, never implied",
    )


def build_config(task: str, items: list[str], preset: str | None = None):
    """The command's TrainConfig: :func:`apexjax.presets.train_config` (preset ``preset``
    of ``task`` if given, then the ``--set`` items; validated, nothing compiles).

    Raises:
      ConfigError: an unknown preset (the message lists the task's presets) or a bad
        ``--set`` item.
    """
    from apexjax import presets

    return presets.train_config(task, preset, list(items))


#: XLA:CPU's collective timeouts, raised where the command creates host devices. XLA's
#: defaults (a "may be stuck" line after 20 s, abort after 40 s) kill a long CPU run: the
#: host devices of one episode batch finish up to minutes apart (a 1000-step humanoid
#: episode on native physics took one shard past 40 s behind the other, and XLA aborted
#: the process). The command's own watchdog (--hang-timeout) reports real hangs.
CPU_COLLECTIVE_FLAGS = {
    "xla_cpu_collective_call_warn_stuck_timeout_seconds": 600,
    "xla_cpu_collective_call_terminate_timeout_seconds": 24 * 3600,
    "xla_cpu_collective_timeout_seconds": 24 * 3600,
}


def _jaxlib_has_cpu_collective_flags() -> bool:
    # the flags exist from jaxlib 0.9 on; an XLA that does not know a flag refuses to start
    import importlib.metadata

    try:
        major, minor = (int(x) for x in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (0, 9)


def request_host_devices(n: int) -> None:
    """Asks XLA for ``n`` CPU host devices, unless the user's ``XLA_FLAGS`` already say how
    many, with longer collective timeouts (:data:`CPU_COLLECTIVE_FLAGS`, each unless the
    user set it). Only the command line does this (before JAX creates its backends); the
    library never touches ``XLA_FLAGS``. Harmless on GPU: it adds CPU devices that go
    unused."""
    flags = os.environ.get("XLA_FLAGS", "")
    if n <= 1:
        return
    if "xla_force_host_platform_device_count" not in flags:
        flags = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    if _jaxlib_has_cpu_collective_flags():
        for name, value in CPU_COLLECTIVE_FLAGS.items():
            if name not in flags:
                flags = f"{flags} --{name}={value}"
    os.environ["XLA_FLAGS"] = flags


def distributed_config(args: argparse.Namespace):
    """The :class:`apexjax.distributed.DistributedConfig` the flags ask for (validated)."""
    from apexjax.distributed import DistributedConfig

    return DistributedConfig(
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        auto=args.distributed == "auto",
    )


def _saved(run_dir: pathlib.Path, field: str, default: int) -> int | None:
    """An int ``field`` of the config saved in ``run_dir`` (plain JSON, before JAX starts);
    ``None`` where it is not readable (resuming then fails with the reason)."""
    try:
        v = json.loads((run_dir / "config.json").read_text()).get(field, default)
    except (OSError, ValueError, AttributeError):
        return None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None


def saved_num_devices(run_dir: pathlib.Path) -> int | None:
    """``num_devices`` of the run saved in ``run_dir``, read before JAX starts; ``None``
    where there is no readable config."""
    return _saved(run_dir, "num_devices", 1)


def preset_metadata(task: str, preset: str, items: list[str], config) -> dict:
    """What a run records about its preset: the name, its overrides (as ``--set``
    strings), the ``--set`` items given on top, and how many times fewer simulated steps
    the resulting ``config`` spends than the task's ``paper`` preset."""
    from apexjax import presets

    return {
        "preset": preset,
        "preset_overrides": presets.override_items(presets.preset_overrides(task, preset)),
        "set": list(items),
        "reduction_vs_paper": presets.config_reduction(config),
    }


COMPILE_NOTE = (
    "XLA may print 'Very slow compile?' or 'rendezvous ... may be stuck' notices while it "
    "compiles; they are not errors"
)


class Progress:
    """Progress of a long command on ``stream`` (default stderr), for the command line.

    On a terminal: one tqdm bar over ``total`` steps, the current stage as its
    description, facts such as episodes so far after it, and the elapsed time ticking
    while a step runs. Elsewhere (a CI log, a file): no bar and no carriage returns, one
    plain line per stage. Result lines go through :meth:`write`, which keeps the bar
    whole. ``tty`` overrides the terminal check.
    """

    def __init__(
        self,
        total: int,
        *,
        unit: str = "it",
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:  # a terminal, and one with a width (a bare pty reports 0 columns)
                tty = self.stream.isatty() and os.get_terminal_size(self.stream.fileno())[0] > 0
            except (AttributeError, ValueError, OSError):
                tty = False
        self.tty = bool(tty)
        self._bar: Any = None
        self._started = False
        self._stop = threading.Event()
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit=unit, file=self.stream, dynamic_ncols=True, leave=True
            )
            # tqdm redraws only when told to; tick the elapsed time during a long step
            threading.Thread(target=self._tick, name="apexjax-progress", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            bar = self._bar
            if bar is not None:
                bar.refresh()

    def stage(self, text: str, note: str = "") -> None:
        """The stage that starts now: the bar's description (``note`` on a line above it),
        or one line (``text (note)``)."""
        if self._bar is not None:
            if note:
                self._bar.write(f"{text}: {note}", file=self.stream)
            self._bar.set_description_str(text)
        else:
            print(f"{text} ({note})" if note else text, file=self.stream, flush=True)

    def at(self, done: int) -> None:
        """Sets the steps done so far (a resumed run starts part of the way). The first
        call also restarts the clock, so the rate and time left leave out the compile."""
        bar = self._bar
        if bar is None:
            return
        if not self._started:
            self._started = True
            bar.reset(total=bar.total)
            bar.initial = done
        if bar.n != done:
            bar.n = done
            bar.refresh()

    def advance(self, n: int = 1, postfix: str = "") -> None:
        """``n`` more steps done; ``postfix`` shown after the bar."""
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)

    def write(self, line: str) -> None:
        """A result line, above the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def logging_to_bar(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which log lines go out above the bar instead of through it."""
        if self._bar is None:
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm(loggers=[logging.getLogger()])

    def close(self) -> None:
        """Ends the bar (idempotent)."""
        self._stop.set()
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()


#: the ``--set`` keys a resumed run accepts: the target, and which rows SGD draws from
RESUMABLE = ("iterations", "dataset_window")


def _key(item: str) -> str:
    return item.split("=", 1)[0].strip()


def _saved_config(run_dir: pathlib.Path):
    """The config saved in ``run_dir`` (``None`` where it is not readable; resuming then
    fails with the reason)."""
    from apexjax.train import config_from_dict

    try:
        return config_from_dict(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def run(args: argparse.Namespace) -> int:
    dist = distributed_config(args)  # bad flags: one clear error before anything starts
    if args.hang_timeout < 0:
        raise ConfigError(f"--hang-timeout: must be >= 0 seconds, got {args.hang_timeout}")
    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices: must be >= 1, got {args.devices}")
    if args.tensorboard is not None:  # a missing extra: one line before anything starts
        from apexjax.tensorboard import require_tensorboardx

        require_tensorboardx()
    if args.render and "mujoco" not in sys.modules:  # MuJoCo reads MUJOCO_GL at import
        from apexjax.commands.render import choose_gl_for_training

        choose_gl_for_training()
    from apexjax import cli, envs

    if args.init_from is not None and args.resume:
        raise ConfigError(
            "--init-from: a resumed run continues from its own checkpoints; drop --init-from "
            "or start a new --run-dir"
        )
    if (args.init_checkpoint != "last" or args.init_policy_only) and args.init_from is None:
        raise ConfigError("--init-checkpoint/--init-policy-only: only with --init-from RUN_DIR")
    if args.resume:  # the run's own task modules, before any task is looked up
        cli.import_run_modules(args.run_dir or pathlib.Path("runs") / f"train-{args.task}")
    if args.init_from is not None:
        cli.import_run_modules(args.init_from)
    envs.check_task(args.task)  # unknown task: one clear error before anything else
    if args.preset is not None and args.resume:
        raise ConfigError(
            "--preset: a resumed run keeps its saved config; drop --preset (train longer "
            "with --set iterations=N)"
        )
    if args.resume:
        others = [item for item in args.set if _key(item) not in RESUMABLE]
        if others:
            raise ConfigError(
                f"--set {others[0]}: a resumed run keeps its saved config; with --resume "
                "only --set iterations=N and --set dataset_window=N apply"
            )
    config = build_config(args.task, list(args.set), preset=args.preset)
    # resuming: an explicit --set iterations=N is the new target; without it, the saved one
    iterations = window = None
    if any(_key(item) == "iterations" for item in args.set):
        iterations = config.iterations
    if any(_key(item) == "dataset_window" for item in args.set):
        window = config.dataset_window
    meta = None
    if args.preset is not None:
        meta = preset_metadata(args.task, args.preset, list(args.set), config)
    meta = cli.with_task_modules(meta, args.task)  # what eval/export/--resume must import
    run_dir = args.run_dir or pathlib.Path("runs") / f"train-{args.task}"
    from apexjax.train import check_run_dir_path

    check_run_dir_path(run_dir)  # a file, or under one: one clear error before JAX starts

    # Host devices must be asked for before JAX starts its backends.
    if args.devices is not None:
        request_host_devices(args.devices)
    elif args.resume and not dist.auto:
        saved = saved_num_devices(run_dir)
        processes = dist.num_processes or 1
        if saved is not None and saved % processes == 0:
            request_host_devices(saved // processes)

    from apexjax import distributed

    distributed.initialize(dist)
    import jax

    processes = jax.process_count()
    num_devices = None
    if args.devices is not None:
        num_devices = args.devices * processes
    elif processes > 1 and not args.resume:
        if not any(item.split("=", 1)[0].strip() == "num_devices" for item in args.set):
            num_devices = jax.device_count()
    primary = jax.process_index() == 0
    if not primary:
        logging.getLogger("apexjax").setLevel(logging.WARNING)

    from apexjax.train import train

    run_config = config
    if args.resume:
        run_config = _saved_config(run_dir) or config
    total = iterations if args.resume and iterations is not None else run_config.iterations
    # episodes run per iteration: expert, DAgger (each where on), the policy-alone evaluation
    E = run_config.num_envs
    per_iteration = E * (int(run_config.expert_data) + int(run_config.dagger) + 1)
    bar: Progress | None = None  # created once the header line is out
    done = {"episodes": 0, "steps": 0.0}

    def progress(it: int, row: dict[str, float]) -> None:
        done["episodes"] += per_iteration
        done["steps"] += row.get("simulated_steps", 0.0)
        so_far = f"{done['episodes']} episodes, {done['steps']:.3g} simulated steps this session"
        keys = ("expert_return", "policy_return", "expert_success", "policy_success")
        shown = "  ".join(f"{k} {row[k]:.2f}" for k in keys if k in row)
        line = (
            f"iter {it}/{total}  {shown} (n={E} episode{'s each' if E > 1 else ''})  "
            f"lambda {row['lambda_mean']:.3f}  loss {row['loss']:.4f}  {row['seconds']:.1f} s"
        )
        if bar is not None:
            bar.write(line if bar.tty else f"{line}  ({so_far})")
            bar.advance(postfix=so_far)

    def on_stage(name: str) -> None:
        watchdog.progress(name)
        if bar is None:
            return
        if name.startswith("compiling"):
            bar.stage(name, COMPILE_NOTE)
        elif name.startswith("iteration "):
            it = int(name.split()[1])
            bar.at(it - 1)
            bar.stage(f"iteration {it}/{total}" + ("" if bar.tty else " ..."))
        elif name.startswith("saving checkpoint"):
            bar.stage(name + ("" if bar.tty else " ..."))
        elif name == "done":
            bar.close()

    if primary:
        from apexjax.loop import physics_backend

        where = f" over {processes} processes" if processes > 1 else ""
        what = (
            f"resume {run_dir} to iteration {total}"
            if args.resume
            else f"train {config.task} -> {run_dir}"
        )
        what += f" ({physics_backend(run_config)} physics)"
        if args.init_from is not None:
            what += f", from {args.init_from} checkpoint {args.init_checkpoint}"
        if args.preset is not None:
            from apexjax.presets import compare_budget

            red = (meta or {}).get("reduction_vs_paper")
            what += f", preset {args.preset}" + (
                f" ({compare_budget(red['per_run'], 'simulated steps')})" if red else ""
            )
        print(f"{what}{where}", file=sys.stderr, flush=True)
        bar = Progress(total, unit="iteration")
    callback = progress
    tensorboard = None
    if args.tensorboard is not None and primary:
        from apexjax.tensorboard import MetricsWriter

        tb_dir = run_dir / "tensorboard" if args.tensorboard is _IN_RUN_DIR else args.tensorboard
        tensorboard = MetricsWriter(tb_dir)

        def callback(it: int, row: dict[str, float]) -> None:
            progress(it, row)
            tensorboard(it, row)

    from apexjax.train import summary_table
    from apexjax.watchdog import Watchdog

    hint = "Raise --hang-timeout if a compile legitimately takes longer. "
    logs = bar.logging_to_bar() if bar is not None else contextlib.nullcontext()
    try:
        with logs, Watchdog(args.hang_timeout, hint=hint) as watchdog:
            summary = train(
                None if args.resume else config,
                run_dir,
                resume=args.resume,
                iterations=iterations if args.resume else None,
                dataset_window=window if args.resume else None,
                num_devices=num_devices,
                callback=callback,
                on_stage=on_stage,
                metadata=meta,
                init_from=args.init_from,
                init_checkpoint=args.init_checkpoint,
                init_dataset=not args.init_policy_only,
            )
    finally:
        if bar is not None:
            bar.close()
        if tensorboard is not None:
            tensorboard.close()
    if primary:
        print(summary_table(summary), file=sys.stderr, flush=True)
        print(json.dumps(summary["final"], indent=2))
        if tensorboard is not None:
            print(f"TensorBoard: tensorboard --logdir {tensorboard.logdir}", file=sys.stderr)
        if args.render and processes > 1:
            print(
                f"render: skipped in a multi-process run; `apexjax render {run_dir}` renders it",
                file=sys.stderr,
                flush=True,
            )
        elif args.render:  # never fails the run: a warning line where it cannot render
            from apexjax.commands.render import render_after_training

            render_after_training(run_dir)
    return 0

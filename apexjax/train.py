"""The run directory around the outer loop (:func:`apexjax.driver.fit`): log, checkpoint,
resume.

A run directory holds ``config.json`` (the resolved config), ``metrics.jsonl`` and
``metrics.csv`` (one row per iteration), ``checkpoints/`` (the full :class:`TrainState`
through orbax, one directory per saved iteration, all kept, so a resumed run continues
exactly as an uninterrupted one would), ``summary.json`` + ``summary.md`` (final metrics),
``metadata.json`` (how the run was configured: the physics backend it runs on and, where
given, its preset and the run it started from, ``init_from``) and ``learning_curve.png``
(expert vs policy return and success, and λ, per iteration; needs matplotlib). Nothing here runs inside jit.

A run directory is never lost or corrupted by the driver:

- one process at a time: :class:`RunLock` (``RUN_DIR/.lock``, the holder's pid and host)
  makes a second :func:`train` on the same directory fail with :class:`RunDirError`; the
  lock of a process that is gone is taken over with a warning;
- resuming restores the newest checkpoint that reads back intact (an unreadable one is
  reported, kept, and moved aside to ``N.corrupt-TIMESTAMP`` before step ``N`` is written
  again) and cuts ``metrics.jsonl``/``metrics.csv`` back to the restored iteration, so no
  row is ever counted twice;
- unwritable files or directories are found before anything compiles, and a write that
  fails mid-run ends it with one :class:`RunDirError` that says up to which checkpoint
  the run is intact (``resume`` continues from there);
- the run's JSON files and rewritten metrics are replaced atomically (temporary file and
  ``os.replace``).

The state is replicated on every device, so a checkpoint restores onto any device count
that divides ``num_envs`` (:func:`load_checkpoint`, ``train(..., resume=True,
num_devices=N)``). In a multi-process run (:mod:`apexjax.distributed`) every process calls
:func:`train` alike; process 0 alone takes the lock, writes the run files and logs, the
checkpoints are saved by all processes together (orbax) and the run directory must be on a
filesystem they share.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import gc
import io
import json
import logging
import os
import pathlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from apexjax import aggregator, distributed, plots
from apexjax.configs import ConfigError, to_dict
from apexjax.driver import fit
from apexjax.envs.base import Task
from apexjax.guidance import GuidanceConfig
from apexjax.loop import (
    TrainConfig,
    TrainState,
    build_task,
    init_train_state,
    physics_backend,
    replicated_sharding,
)
from apexjax.planning.icem import ICEMConfig
from apexjax.policy import PolicyConfig
from apexjax.presets import compare_budget
from apexjax.sharding import make_mesh

try:
    import fcntl
except ImportError:  # not POSIX: the lock falls back to the pid it records
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RunDirError",
    "RunLock",
    "check_run_dir_path",
    "checkpoint_steps",
    "config_from_dict",
    "init_state_from",
    "load_checkpoint",
    "read_metrics",
    "summary_table",
    "train",
    "with_devices",
]

log = logging.getLogger(__name__)

_SUB = {"planner": ICEMConfig, "policy": PolicyConfig, "guidance": GuidanceConfig}
_LOCK_NAME = ".lock"
_CAUSE_CHARS = 200


class RunDirError(ConfigError):
    """The run directory cannot be used: another process holds it, a file cannot be
    written, or no checkpoint reads back. The message names the file and what to do; the
    command line reports it in one line (exit status 2) like any :class:`ConfigError`."""


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
            if name == "planner":
                # derived from policy_candidates (TrainConfig.expert_planner); older runs
                # stored the derived count
                sub.pop("num_extra_candidates", None)
            kw[name] = cls(**sub)
    try:
        return TrainConfig(**kw)
    except TypeError as e:
        raise ConfigError(f"config.json: {e}") from None


def _short(e: BaseException) -> str:
    """``Type: first line of the message`` cut to about 200 characters (orbax and
    TensorStore errors run to hundreds of lines)."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > _CAUSE_CHARS:
        first = first[: _CAUSE_CHARS - 3] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _checkpointer() -> ocp.Checkpointer:
    return ocp.StandardCheckpointer()


def checkpoint_steps(run_dir: str | pathlib.Path) -> list[int]:
    """The iterations saved under ``run_dir/checkpoints`` (directories named by a number),
    ascending. Orbax's unfinished ``N.orbax-checkpoint-tmp-*`` directories and checkpoints
    moved aside as ``N.corrupt-*`` do not count."""
    ckpt_dir = pathlib.Path(run_dir) / "checkpoints"
    try:
        return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit() and p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def check_run_dir_path(run_dir: str | pathlib.Path) -> None:
    """Checks that ``run_dir`` is, or can become, a directory (cheap; no JAX).

    Raises:
      RunDirError: ``run_dir`` or one of its parents is a file.
    """
    path = pathlib.Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run directory {path}: is a file, not a directory; pick another path")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(
                    f"run directory {path}: its parent {parent} is a file, not a directory"
                )
            break


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
    check_run_dir_path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"{run_dir}: not a run directory (no config.json)")
    try:
        return config_from_dict(json.loads(cfg_path.read_text()))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path}: corrupt JSON ({e})") from None
    except OSError as e:
        raise RunDirError(f"{cfg_path}: cannot read ({_short(e)})") from None


# ---------------------------------------------------------------------------------------
# files: atomic writes, metrics that survive a kill at any point


def _write_atomic(path: pathlib.Path, text: str) -> None:
    """Replaces ``path`` by ``text`` atomically: a reader (or a kill) sees the old file or
    the new one, never half of one. The file gets the usual ``0o666 & ~umask`` mode."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _parse_metrics(text: str, where: pathlib.Path) -> list[dict[str, Any]]:
    rows, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1  # a line cut short by a kill or a full disk
            continue
        if isinstance(row, dict) and isinstance(row.get("iteration"), int):
            rows.append(row)
        else:
            bad += 1
    if bad:
        log.warning(
            "%s: skipped %d unreadable line(s) (cut short by an interrupted write?)", where, bad
        )
    return rows


def read_metrics(run_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """The rows of ``run_dir/metrics.jsonl`` (``[]`` if there is none); lines that do not
    parse (an interrupted write) are skipped with a warning."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    try:
        return _parse_metrics(path.read_text(), path)
    except FileNotFoundError:
        return []


def _csv_text(rows: list[dict[str, Any]], fieldnames: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return buf.getvalue()


def _rewind_metrics(run_dir: pathlib.Path, iteration: int) -> None:
    """Cuts ``metrics.jsonl`` and ``metrics.csv`` back to the rows of iterations up to
    ``iteration`` (the restored checkpoint's): rows a kill, a failed save or a checkpoint
    that did not read back left behind would otherwise be counted twice. Each file is
    rewritten atomically, and only where something changes."""
    jsonl = run_dir / "metrics.jsonl"
    csv_path = run_dir / "metrics.csv"
    if jsonl.exists():
        text = jsonl.read_text()
        rows = _parse_metrics(text, jsonl)
        kept = [r for r in rows if r["iteration"] <= iteration]
        new_text = "".join(json.dumps(r) + "\n" for r in kept)
        if new_text != text:
            _write_atomic(jsonl, new_text)
            log.info(
                "%s: rewound to iteration %d (%d row(s) after it dropped)",
                jsonl,
                iteration,
                len(rows) - len(kept),
            )
        if csv_path.exists() or kept:
            # metrics.csv follows metrics.jsonl row for row (a partial CSV line has no
            # reliable way to tell itself from a whole one); same header as before
            old = csv_path.read_text() if csv_path.exists() else ""
            header = next(csv.reader([old.splitlines()[0]]), []) if old.strip() else []
            fieldnames = header or (list(kept[0]) if kept else [])
            new_csv = _csv_text(kept, fieldnames) if fieldnames else ""
            if new_csv != old:
                _write_atomic(csv_path, new_csv)
        return
    if csv_path.exists():  # no JSONL to follow: filter the CSV rows themselves
        old = csv_path.read_text()
        lines = list(csv.reader(io.StringIO(old)))
        if not lines:
            return
        header, body = lines[0], lines[1:]
        col = header.index("iteration") if "iteration" in header else None

        def keep(r: list[str]) -> bool:
            try:
                return len(r) == len(header) and col is not None and float(r[col]) <= iteration
            except ValueError:
                return False

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(r for r in body if keep(r))
        if buf.getvalue() != old:
            _write_atomic(csv_path, buf.getvalue())


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


def _probe(directory: pathlib.Path) -> None:
    """Creates, writes and removes a small file in ``directory`` (raises OSError if not)."""
    probe = directory / f".write-probe-{socket.gethostname()}-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"apexjax write probe\n")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _check_writable(run_dir: pathlib.Path, primary: bool) -> None:
    """Everything the run will write, checked before anything compiles (process 0: the run
    files; every process: ``checkpoints/``, which orbax writes from all of them).

    Raises:
      RunDirError: naming the first file or directory that cannot be written.
    """
    need = "free space or fix its permissions, or pick another --run-dir"
    targets: list[tuple[pathlib.Path, int]] = []
    if primary:
        targets.append((run_dir, os.W_OK | os.X_OK))
        for name in ("metrics.jsonl", "metrics.csv"):  # appended to, never replaced
            if (run_dir / name).exists():
                targets.append((run_dir / name, os.W_OK))
    ckpt = run_dir / "checkpoints"
    if ckpt.is_dir():
        targets.append((ckpt, os.W_OK | os.X_OK))
    for path, mode in targets:
        if not os.access(path, mode):
            raise RunDirError(f"{path}: not writable; {need}")
    if ckpt.is_dir():
        try:
            _probe(ckpt)
        except OSError as e:
            raise RunDirError(f"{ckpt}: cannot write a file there ({_short(e)}); {need}") from None


# ---------------------------------------------------------------------------------------
# the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


class RunLock:
    """``RUN_DIR/.lock``: at most one process trains in a run directory at a time.

    The file records the holder (pid, host, start time, command). On POSIX the holder also
    keeps an exclusive ``flock`` on it, which the kernel drops however the process ends, so
    a lock file left by a killed process is recognised as stale and taken over with a
    warning. Where ``flock`` is not available the recorded pid decides (stale when no
    such process runs on this host). A lock recorded by another host is never taken over
    (its process cannot be checked from here): the message says to delete the file if
    that process is gone. :meth:`release` (or leaving the ``with`` block, also through an
    exception) removes the file.

    Raises (from :meth:`acquire`):
      RunDirError: another live process holds the lock (the message names its pid and
        host), or the lock file cannot be created.
    """

    def __init__(self, run_dir: str | pathlib.Path) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.path = self.run_dir / _LOCK_NAME
        self._fd: int | None = None

    def _holder(self, fd: int) -> dict[str, Any] | None:
        try:
            data = os.pread(fd, 4096, 0)
            holder = json.loads(data.decode())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _busy(self, holder: dict[str, Any] | None) -> RunDirError:
        if holder is None:
            who = "another process (its lock file names none)"
        else:
            who = f"pid {holder.get('pid')} on host {holder.get('host')}"
            if holder.get("started"):
                who += f", since {holder['started']}"
        return RunDirError(
            f"{self.run_dir}: in use by {who}; lock file {self.path}. Wait for that run to "
            f"finish or stop it; if no such process is running any more, delete {self.path}"
        )

    def acquire(self) -> None:
        """Takes the lock (see the class docstring)."""
        host = socket.gethostname()
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise RunDirError(
                    f"{self.path}: cannot create the lock file ({_short(e)})"
                ) from None
            flocked = False
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    flocked = True
                except BlockingIOError:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise self._busy(holder) from None
                except OSError:  # a filesystem without flock: the recorded pid decides
                    pass
            # The holder may have removed the file (and another process re-created it)
            # between our open and our flock: then try again on the file now there.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            holder = self._holder(fd)
            if holder is not None and (holder.get("pid"), holder.get("host")) != (
                os.getpid(),
                host,
            ):
                pid = holder.get("pid")
                if holder.get("host") != host:
                    os.close(fd)
                    raise self._busy(holder)
                if not flocked and (not isinstance(pid, int) or _pid_alive(pid)):
                    os.close(fd)
                    raise self._busy(holder)
                log.warning(
                    "%s: taking over the stale lock of pid %s (no longer running it)",
                    self.run_dir,
                    pid,
                )
            elif holder is None and not flocked and os.fstat(fd).st_size:
                os.close(fd)
                raise self._busy(None)
            me = {
                "pid": os.getpid(),
                "host": host,
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:300],
            }
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            except OSError as e:
                os.close(fd)
                raise RunDirError(
                    f"{self.path}: cannot write the lock file ({_short(e)})"
                ) from None
            self._fd = fd
            return
        raise RunDirError(f"{self.path}: the lock file keeps changing; another process is starting")

    def release(self) -> None:
        """Removes the lock file (if it is still this lock's) and drops the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _agree(failure: ConfigError | None, what: str) -> None:
    """Raises ``failure`` here, and a :class:`RunDirError` on every other process, if any
    process failed a start-up check: a check that one process alone can make (the lock,
    writing the run files) must not leave the others waiting at the next collective."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        flags = np.asarray(multihost_utils.process_allgather(np.int32(failure is not None)))
        if failure is None and flags.any():
            failed = ", ".join(str(i) for i in np.flatnonzero(flags))
            raise RunDirError(f"{what}: failed on process(es) {failed}; see the error there")
    if failure is not None:
        raise failure


# ---------------------------------------------------------------------------------------
# checkpoints


@contextlib.contextmanager
def _quiet_closed_loop(linger_s: float) -> Iterator[None]:
    """While a checkpoint is tried: keeps the debris of a failed orbax restore off stderr.

    The TensorStore reads still in flight when orbax gives up raise "Event loop is closed"
    in their callbacks (dozens of tracebacks through ``sys.unraisablehook``), and asyncio
    logs each of their failed futures, "Future exception was never retrieved", with the
    whole TensorStore spec (hundreds of lines). Both are dropped here (the cause itself is
    reported once, shortly); every other unraisable error and log record passes. After a
    failure it lingers up to ``linger_s`` for the reads still in flight and collects the
    dropped futures while the filter is on.
    """
    previous = sys.unraisablehook
    last = [time.monotonic()]
    asyncio_log = logging.getLogger("asyncio")

    def drop_unretrieved(record: logging.LogRecord) -> bool:
        first = str(record.msg).split("\n", 1)[0]  # "Task/Future exception was never ..."
        return not first.endswith("exception was never retrieved")

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            last[0] = time.monotonic()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    asyncio_log.addFilter(drop_unretrieved)
    try:
        yield
    except BaseException:
        # wait until the late callbacks stop (0.1 s without one), at most linger_s
        last[0] = time.monotonic()
        deadline = last[0] + linger_s
        while time.monotonic() < deadline and time.monotonic() - last[0] < 0.1:
            time.sleep(0.02)
        gc.collect()  # the failed futures log when collected: now, while filtered
        raise
    finally:
        asyncio_log.removeFilter(drop_unretrieved)
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous


def _candidates(run_dir: pathlib.Path, checkpoint: int | str) -> tuple[list[int], str]:
    """The checkpoint steps to try, in order, and what was asked for (for messages)."""
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise RunDirError(
            f"{run_dir}: no checkpoint under checkpoints/ (the run stopped before its first "
            "save; start it again in a new directory)"
        )
    if isinstance(checkpoint, str) and checkpoint.strip().isdigit():
        checkpoint = int(checkpoint)
    if checkpoint == "last":
        return steps[::-1], "the newest checkpoint"
    if checkpoint == "best":
        best: dict[int, float] = {}
        for row in read_metrics(run_dir):  # a repeated iteration: its latest row counts
            if isinstance(row.get("policy_return"), int | float):
                best[row["iteration"]] = float(row["policy_return"])
        ranked = sorted((s for s in steps if s in best), key=lambda s: (-best[s], -s))
        if not ranked:
            raise RunDirError(
                f"{run_dir}: no metrics row with policy_return for any of its checkpoints "
                f"({', '.join(map(str, steps))}); cannot tell which one is best"
            )
        return ranked, "the best checkpoint by policy_return"
    if isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
        if checkpoint not in steps:
            raise RunDirError(
                f"{run_dir}: no checkpoint {checkpoint}; saved: {', '.join(map(str, steps))}"
            )
        return [checkpoint], f"checkpoint {checkpoint}"
    raise ConfigError(
        f"checkpoint: expected 'last', 'best' or an iteration number, got {checkpoint!r}"
    )


def _restore(
    run_dir: pathlib.Path,
    config: TrainConfig,
    sharding: jax.sharding.Sharding,
    checkpoint: int | str,
) -> tuple[TrainState, int, list[int]]:
    """Restores the first of the candidate checkpoints that reads back intact; returns the
    state, its step and the steps that did not read back (reported, never touched)."""
    candidates, asked = _candidates(run_dir, checkpoint)
    task = build_task(config)
    # Restore straight into the target layout: orbax reads every array whole onto each
    # device, so the device count the checkpoint was written from does not matter.
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        jax.eval_shape(lambda: init_train_state(config, task)),
    )
    bad: list[tuple[int, str]] = []
    fallback = checkpoint in ("last", "best")
    for step in candidates if fallback else candidates[:1]:
        path = (run_dir / "checkpoints" / str(step)).absolute()
        try:
            with _quiet_closed_loop(linger_s=0.5):
                state = _checkpointer().restore(path, target)
            got = int(state.iteration)
            if got != step:
                raise ValueError(f"it holds iteration {got}, not {step}")
        except Exception as e:  # orbax raises many kinds; the user needs the path and the cause
            cause = _short(e)
            log.debug("restoring %s failed", path, exc_info=True)
            bad.append((step, cause))
            if fallback and distributed.is_primary():
                log.warning("%s: unreadable checkpoint, skipped and kept (%s)", path, cause)
            continue
        if bad and distributed.is_primary():
            log.warning(
                "%s: using checkpoint %d instead of %s (%s unreadable)",
                run_dir,
                step,
                asked,
                ", ".join(str(s) for s, _ in bad),
            )
        return state, step, [s for s, _ in bad]
    step, cause = bad[0]
    path = (run_dir / "checkpoints" / str(step)).absolute()
    if len(bad) == 1:
        raise RunDirError(f"{path}: cannot restore checkpoint ({cause})")
    raise RunDirError(
        f"{run_dir}: no checkpoint reads back ({', '.join(str(s) for s, _ in bad)} tried); "
        f"{path}: {cause}"
    )


def load_checkpoint(
    run_dir: str | pathlib.Path,
    num_devices: int | None = None,
    *,
    checkpoint: int | str = "last",
) -> tuple[TrainConfig, TrainState]:
    """The config and a saved full training state of ``run_dir``.

    Args:
      run_dir: a run directory written by :func:`train`.
      num_devices: lay the state out for this many devices (replicated on each, as
        :func:`apexjax.loop.place_state` does), whatever count the run was saved with; the
        returned config says ``num_devices`` accordingly. ``None``: the config as saved and
        the state on this process's first device (inspection, export; pass it through
        ``place_state`` before a multi-device step).
      checkpoint: ``"last"`` (the newest checkpoint; one that does not read back is
        skipped with a warning for the next newest), ``"best"`` (the checkpointed
        iteration with the highest ``policy_return`` in ``metrics.jsonl``, the later one on
        a tie; likewise skipping unreadable ones), or an iteration number (exactly that
        checkpoint). The state's ``iteration`` says which one was restored.

    Raises:
      ConfigError: no run there, its config cannot be read, ``num_devices`` does not
        divide the run's ``num_envs``, or ``checkpoint`` is not one of the above.
      RunDirError: (a ConfigError) no checkpoint, or none of those asked for reads back
        (one line naming the file and the first line of the cause).
    """
    run_dir = pathlib.Path(run_dir)
    config = _read_config(run_dir)
    if num_devices is not None:
        config = with_devices(config, num_devices)
    if num_devices is None or num_devices == 1:
        sharding: jax.sharding.Sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    else:
        sharding = replicated_sharding(config)
    state, _, _ = _restore(run_dir, config, sharding, checkpoint)
    return config, state


def _oldest_first(dataset: aggregator.Dataset) -> np.ndarray:
    """Indices of ``dataset``'s filled rows in the order they were written."""
    size, cursor, cap = int(dataset.size), int(dataset.cursor), dataset.capacity
    if size < cap:
        return np.arange(size)
    return np.roll(np.arange(cap), -cursor)  # full: the oldest row is at the cursor


def init_state_from(
    config: TrainConfig,
    task: Task,
    source: str | pathlib.Path,
    *,
    checkpoint: int | str = "last",
    dataset: bool = True,
) -> tuple[TrainState, dict[str, Any]]:
    """A new run's first state, started from another run's checkpoint.

    The new run is ``config``'s own (its seed, planner, guidance, iterations from 0); it
    takes from ``source`` the policy's parameters and observation normaliser and, with
    ``dataset``, the aggregated dataset (the newest rows that fit ``config.dataset_capacity``,
    in the order they were written). The optimiser starts fresh from ``config.policy``; the
    guidance's running costs start empty, so the adaptive modes measure the started
    policy as the run's "untrained" one. Uses: change what a resumed run cannot (the
    guidance weight after some iterations, a bigger planner on a GPU) or fine-tune a policy.

    Args:
      config: the new run's config.
      task: its built task (:func:`apexjax.loop.build_task` of ``config``).
      source: a run directory written by :func:`train`.
      checkpoint: which of its checkpoints, as in :func:`load_checkpoint`.
      dataset: also carry the dataset (``False``: the policy alone, an empty dataset).

    Returns:
      The state (on this process's first device; :func:`apexjax.driver.fit` places it)
      and what was taken, JSON-ready (recorded as ``init_from`` in the run's
      ``metadata.json``).

    Raises:
      ConfigError: ``source`` is not a readable run, trained another task, or its policy
        network or the task's observation or action space differs from ``config``'s
        (the message names the field).
    """
    if not isinstance(dataset, bool):
        raise ConfigError(f"init_dataset: expected True or False, got {dataset!r}")
    source = pathlib.Path(source)
    saved, src = load_checkpoint(source, checkpoint=checkpoint)
    where = f"init_from {source}"
    if saved.task != config.task:
        raise ConfigError(
            f"{where}: that run trained {saved.task!r}, this one is {config.task!r}; the task "
            "must be the same"
        )
    for field in ("hidden", "activation"):
        ours, theirs = getattr(config.policy, field), getattr(saved.policy, field)
        if ours != theirs:
            raise ConfigError(
                f"{where}: policy.{field} is {theirs!r} there and {ours!r} here; the policy "
                "network must be the same"
            )
    fresh = init_train_state(config, task)
    for what, ours, theirs in (
        ("observation size", fresh.policy.normalizer.mean.shape, src.policy.normalizer.mean.shape),
        ("action size", fresh.policy.action_low.shape, src.policy.action_low.shape),
    ):
        if ours != theirs:
            raise ConfigError(
                f"{where}: {what} {theirs} there and {ours} here (task options differ); "
                "they must be the same"
            )
    same_bounds = np.array_equal(
        np.asarray(fresh.policy.action_low), np.asarray(src.policy.action_low)
    ) and np.array_equal(np.asarray(fresh.policy.action_high), np.asarray(src.policy.action_high))
    if not same_bounds:
        raise ConfigError(f"{where}: the action bounds differ (task options); they must match")
    norm = fresh.policy.normalizer.replace(
        mean=src.policy.normalizer.mean,
        m2=src.policy.normalizer.m2,
        count=src.policy.normalizer.count,
    )
    pol = fresh.policy.replace(params=src.policy.params, normalizer=norm)
    data, rows = fresh.dataset, 0
    if dataset:
        order = _oldest_first(src.dataset)[-data.capacity :]
        rows = int(order.size)

        def carried(dst: jax.Array, src_rows: jax.Array) -> jax.Array:
            out = np.asarray(dst).copy()
            out[:rows] = np.asarray(src_rows)[order]
            return jax.numpy.asarray(out)

        data = data.replace(
            obs=carried(data.obs, src.dataset.obs),
            actions=carried(data.actions, src.dataset.actions),
            source=carried(data.source, src.dataset.source),
            iteration=carried(data.iteration, src.dataset.iteration),
            size=jax.numpy.asarray(rows, jax.numpy.int32),
            cursor=jax.numpy.asarray(rows % data.capacity, jax.numpy.int32),
        )
    info = {
        "run_dir": str(source.absolute()),
        "checkpoint": int(src.iteration),
        "task": saved.task,
        "dataset_rows": rows,
    }
    return fresh.replace(policy=pol, dataset=data), info


def _save(run_dir: pathlib.Path, state: TrainState, step: int) -> None:
    ckpt = _checkpointer()
    path = (run_dir / "checkpoints" / str(step)).absolute()
    ckpt.save(path, state, force=True)
    ckpt.wait_until_finished()


def _move_aside(run_dir: pathlib.Path, steps: list[int]) -> None:
    """Renames unreadable checkpoints to ``N.corrupt-TIMESTAMP`` (kept for inspection), so
    that saving iteration ``N`` again never replaces one silently."""
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    for step in steps:
        src = run_dir / "checkpoints" / str(step)
        dst = src.with_name(f"{step}.corrupt-{stamp}")
        try:
            os.rename(src, dst)
        except OSError as e:
            raise RunDirError(
                f"{src}: unreadable, and cannot be moved aside before it is written again "
                f"({_short(e)}); move or delete it yourself and resume"
            ) from None
        log.warning("%s: unreadable checkpoint moved aside to %s (kept)", src, dst.name)


# ---------------------------------------------------------------------------------------
# the driver


def _target(config: TrainConfig | None, iterations: int | None, saved: TrainConfig | None) -> int:
    if iterations is not None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ConfigError(f"iterations: expected an int >= 1, got {iterations!r}")
        return iterations
    if config is not None:
        return config.iterations
    if saved is None:
        raise ConfigError("train: a new run needs a config")
    return saved.iterations


def _best(rows: list[dict[str, Any]], steps: list[int]) -> dict[str, Any] | None:
    by_it = {r["iteration"]: r for r in rows if isinstance(r.get("policy_return"), int | float)}
    saved = [s for s in steps if s in by_it]
    if not saved:
        return None
    step = max(saved, key=lambda s: (by_it[s]["policy_return"], s))
    best = {"iteration": step, "policy_return": by_it[step]["policy_return"]}
    if "policy_success" in by_it[step]:
        best["policy_success"] = by_it[step]["policy_success"]
    return best


def train(
    config: TrainConfig | None,
    run_dir: str | pathlib.Path,
    *,
    resume: bool = False,
    iterations: int | None = None,
    dataset_window: int | None = None,
    num_devices: int | None = None,
    checkpoint_every: int = 1,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    metadata: dict[str, Any] | None = None,
    init_from: str | pathlib.Path | None = None,
    init_checkpoint: int | str = "last",
    init_dataset: bool = True,
) -> dict[str, Any]:
    """Trains a run up to its target number of outer iterations; returns the summary dict.

    The target: ``iterations`` if given, else ``config.iterations``. Resuming, the run
    continues with its saved config, and the target is ``iterations`` if given, else
    ``config.iterations`` if a ``config`` is given (only that field of it is used; the
    others are the saved ones), else (``config=None``) the run's own saved target. A target
    changed on resume is saved in ``config.json``; one below the iterations already done is
    an error.

    Args:
      config: the run's config; ``None`` when resuming to the saved target.
      run_dir: created if missing. A run directory that already holds a run (or part of
        one) is never overwritten: pass ``resume=True`` to continue it.
      resume: continue from the newest checkpoint that reads back (an unreadable newer one
        is reported, kept and moved aside to ``N.corrupt-TIMESTAMP``); ``metrics.jsonl`` and
        ``metrics.csv`` are cut back to the restored iteration first.
      iterations: the target (see above); ``None``: as above.
      dataset_window: ``TrainConfig.dataset_window`` for the rest of the run, the one other
        setting a resumed run may change (it changes which rows SGD draws from, not the
        state); saved in ``config.json``. ``None``: the saved one (resume) or ``config``'s.
      num_devices: the device count to run on instead of ``config.num_devices`` (new run)
        or the saved run's count (resume: the replicated state restores onto any count that
        divides ``num_envs``; the same count continues bit for bit, another one to float32
        rounding, as the split program is compiled differently).
      checkpoint_every: save the full state every this many iterations (and at the end);
        every checkpoint is kept.
      callback: called with ``(iteration, metrics)`` after each iteration (progress
        display); on process 0 only in a multi-process run.
      on_stage: called with the name of each stage as it starts ("compiling the training
        step", "iteration 3", "saving checkpoint 3", "done"), on every process: a progress
        display, or a watchdog's heartbeat (:class:`apexjax.watchdog.Watchdog`).
      metadata: JSON-ready facts about how a new run was configured (the CLI passes its
        preset); written to ``metadata.json`` with the physics backend the run uses, and
        repeated in ``summary.json``. A resumed run keeps the one it was started with;
        ``summary.json`` names the backend of the session that wrote it.
      init_from: a new run starts from this run directory's checkpoint instead of a fresh
        policy and an empty dataset (:func:`init_state_from`: the policy and, with
        ``init_dataset``, the dataset; everything else is ``config``'s); recorded as
        ``init_from`` in ``metadata.json``. Not with ``resume``.
      init_checkpoint: which checkpoint of ``init_from``: "last", "best" or an iteration.
      init_dataset: carry ``init_from``'s dataset too (default) or the policy alone.

    Raises:
      ConfigError: a bad argument, or ``num_devices`` does not fit the run or the devices
        at hand; before anything compiles.
      RunDirError: (a ConfigError) the run directory is unusable: a file, held by another
        process (:class:`RunLock`), not writable, no checkpoint reads back (all before
        anything compiles), or a write failed during the run (the message says up to which
        checkpoint the run is intact; resume continues from there).
    """
    run_dir = pathlib.Path(run_dir)
    check_run_dir_path(run_dir)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
        raise ConfigError(f"checkpoint_every: expected an int >= 1, got {checkpoint_every!r}")
    if checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every: expected an int >= 1, got {checkpoint_every!r}")
    primary = distributed.is_primary()
    if init_from is not None:
        if resume:
            raise ConfigError(
                "init_from: a resumed run continues from its own checkpoints; start a new run "
                "directory to start from another run"
            )
        init_from = pathlib.Path(init_from)
        if init_from.absolute() == run_dir.absolute():
            raise ConfigError(f"init_from: {init_from} is the new run's own directory")
        if not isinstance(init_dataset, bool):
            raise ConfigError(f"init_dataset: expected True or False, got {init_dataset!r}")
        try:  # no run there, no such checkpoint: say so before anything starts
            _read_config(init_from)
            _candidates(init_from, init_checkpoint)
        except ConfigError as e:
            raise type(e)(f"init_from: {e}") from None
    if resume:
        saved = _read_config(run_dir)
        n = saved.num_devices if num_devices is None else num_devices
        target = _target(config, iterations, saved)
        run_config = dataclasses.replace(with_devices(saved, n), iterations=target)
        if dataset_window is not None:
            run_config = dataclasses.replace(run_config, dataset_window=dataset_window)
        if primary and run_config.dataset_window != saved.dataset_window:
            log.info(
                "%s: dataset_window %d -> %d for the rest of the run",
                run_dir,
                saved.dataset_window,
                run_config.dataset_window,
            )
        if config is not None and primary:
            ignored = [
                f.name
                for f in dataclasses.fields(TrainConfig)
                if f.name not in ("iterations", "num_devices")
                and not (f.name == "dataset_window" and dataset_window is not None)
                and getattr(config, f.name) != getattr(saved, f.name)
            ]
            if ignored:
                log.warning(
                    "%s: resuming with the saved config; the given config's %s ignored",
                    run_dir,
                    ", ".join(ignored),
                )
        if primary and n != saved.num_devices:
            log.info("%s: saved on %d device(s), continuing on %d", run_dir, saved.num_devices, n)
    else:
        if config is None:
            raise ConfigError("train: a new run needs a config")
        run_config = dataclasses.replace(config, iterations=_target(config, iterations, None))
        if dataset_window is not None:
            run_config = dataclasses.replace(run_config, dataset_window=dataset_window)
        if num_devices is not None:
            run_config = with_devices(run_config, num_devices)
    config = run_config
    if config.num_devices > 1 or jax.process_count() > 1:
        make_mesh(config.num_devices)  # enough devices, shared evenly by the processes
    lock = RunLock(run_dir)
    try:
        failure: ConfigError | None = None
        try:
            if primary:
                if not resume:
                    try:
                        run_dir.mkdir(parents=True, exist_ok=True)
                    except OSError as e:
                        raise RunDirError(
                            f"run directory {run_dir}: cannot create ({_short(e)})"
                        ) from None
                lock.acquire()
                if not resume and (
                    (run_dir / "config.json").exists()
                    or (run_dir / "metrics.jsonl").exists()
                    or checkpoint_steps(run_dir)
                ):
                    raise RunDirError(
                        f"{run_dir}: already holds a run; use resume to continue it or pick "
                        "a new directory"
                    )
                if not resume:
                    try:
                        (run_dir / "checkpoints").mkdir(exist_ok=True)
                    except OSError as e:
                        raise RunDirError(
                            f"{run_dir / 'checkpoints'}: cannot create ({_short(e)})"
                        ) from None
        except ConfigError as e:
            failure = e
        _agree(failure, f"{run_dir}: taking the run directory")
        failure = None
        try:
            _check_writable(run_dir, primary)
        except ConfigError as e:
            failure = e
        _agree(failure, f"{run_dir}: checking it is writable")
        init = None if init_from is None else (init_from, init_checkpoint, init_dataset)
        return _train_locked(
            config, run_dir, resume, checkpoint_every, callback, on_stage, metadata, init
        )
    finally:
        lock.release()


def _train_locked(
    config: TrainConfig,
    run_dir: pathlib.Path,
    resume: bool,
    checkpoint_every: int,
    callback: Callable[[int, dict[str, float]], None] | None,
    on_stage: Callable[[str], None] | None,
    metadata: dict[str, Any] | None,
    init: tuple[pathlib.Path, int | str, bool] | None,
) -> dict[str, Any]:
    primary = distributed.is_primary()
    stage = on_stage or (lambda name: None)
    state: TrainState | None = None
    start = 0
    unreadable: list[int] = []
    if resume:
        sharding = (
            jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            if config.num_devices == 1
            else replicated_sharding(config)
        )
        state, start, unreadable = _restore(run_dir, config, sharding, "last")
        if config.iterations < start:
            raise ConfigError(
                f"iterations: {config.iterations} is below the {start} iterations the run "
                f"already did; pass at least {start}"
            )
        if primary:
            log.info("resuming %s at iteration %d of %d", run_dir, start, config.iterations)
    task = build_task(config)
    if init is not None:  # before any file of the new run is written
        source, which, with_data = init
        state, init_info = init_state_from(
            config, task, source, checkpoint=which, dataset=with_data
        )
        metadata = {**(metadata or {}), "init_from": init_info}
        if primary:
            log.info(
                "starting from %s checkpoint %d (policy%s)",
                source,
                init_info["checkpoint"],
                f" and {init_info['dataset_rows']} dataset rows" if with_data else " alone",
            )
    # Every process has read the run directory before process 0 writes to it.
    distributed.barrier("apexjax.train: run directory checked")
    last_saved = start if resume else None

    def write_failed(what: str, e: BaseException) -> RunDirError:
        where = getattr(e, "filename", None) or what
        intact = (
            f"the run is intact up to checkpoint {last_saved}"
            if last_saved
            else "no checkpoint was saved yet"
        )
        log.debug("writing %s failed", what, exc_info=True)
        return RunDirError(
            f"{where}: write failed ({_short(e)}); {intact}. Free space or fix permissions, "
            "then resume (apexjax train --run-dir ... --resume)"
        )

    failure: ConfigError | None = None
    if primary:
        try:
            if unreadable:
                _move_aside(run_dir, unreadable)
            if resume:
                _rewind_metrics(run_dir, start)
            _write_atomic(run_dir / "config.json", json.dumps(to_dict(config), indent=2))
            if not resume:
                meta = {**(metadata or {}), "backend": physics_backend(config)}
                _write_atomic(run_dir / "metadata.json", json.dumps(meta, indent=2))
        except ConfigError as e:
            failure = e
        except OSError as e:
            failure = write_failed("the run files", e)
    _agree(failure, f"{run_dir}: preparing the run files")
    if state is None:
        state = init_train_state(config, task)
    if primary:
        log.info(
            "task %s: dataset %d rows, %.1f MiB on device (allocated once)",
            config.task,
            config.dataset_capacity,
            aggregator.nbytes(state.dataset) / 2**20,
        )
    last_row: dict[str, float] = {}

    def after_iteration(it: int, row: dict[str, Any], new_state: TrainState) -> None:
        nonlocal last_saved, last_row
        last_row = row
        if primary:
            try:
                _append_metrics(run_dir, row)
            except OSError as e:
                raise write_failed(str(run_dir / "metrics.jsonl"), e) from None
            if callback is not None:
                callback(it, row)
        if it % checkpoint_every == 0 or it == config.iterations:
            stage(f"saving checkpoint {it}")
            ckpt_dir = run_dir / "checkpoints"
            try:
                if not os.access(ckpt_dir, os.W_OK | os.X_OK):
                    raise PermissionError(13, "not writable", str(ckpt_dir))
                _save(run_dir, new_state, it)  # every process: orbax saves collectively
            except Exception as e:  # orbax raises many kinds: one line, the state saved so far kept
                raise write_failed(str(ckpt_dir / str(it)), e) from None
            last_saved = it

    # the one outer loop (apexjax.driver.fit); this function adds the run directory
    result = fit(config, state, task=task, callback=after_iteration, on_stage=stage)
    compile_s, wall, row = result.compile_seconds, result.train_seconds, last_row
    summary: dict[str, Any] = {
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
        try:
            rows = read_metrics(run_dir)
            if not row and rows:  # nothing left to train: the last row there is
                summary["final"] = rows[-1]
            final = summary["final"]
            # every return and success rate is a mean over this many episodes
            summary["n_episodes"] = {k: config.num_envs for k in _PER_EPISODE if k in final}
            summary["best"] = _best(rows, checkpoint_steps(run_dir))
            png = plots.learning_curve(rows, run_dir / "learning_curve.png", config.task)
            if (run_dir / "metadata.json").exists():
                summary["metadata"] = json.loads((run_dir / "metadata.json").read_text())
            summary["plot"] = None if png is None else png.name
            _write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
            _write_atomic(run_dir / "summary.md", summary_table(summary))
        except OSError as e:
            raise write_failed("the summary files", e) from None
    stage("done")
    return summary


# metrics that are means over the iteration's num_envs episodes (summary's n_episodes)
_PER_EPISODE = (
    "expert_return",
    "dagger_return",
    "policy_return",
    "expert_success",
    "policy_success",
)

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
    n_episodes = summary.get("n_episodes") or {}
    for key, label in _SUMMARY_ROWS:
        if key in final:
            v = final[key]
            text = f"{100 * v:.0f} %" if key.endswith("success") else f"{v:.4g}"
            if key in n_episodes:
                n = n_episodes[key]
                label += f" (n={n} episode{'s' if n != 1 else ''})"
            lines.append(f"| {label} | {text} |")
    best = summary.get("best")
    if best:
        text = f"iteration {best['iteration']} (policy alone return {best['policy_return']:.4g}"
        if "policy_success" in best:
            text += f", success {100 * best['policy_success']:.0f} %"
        lines.append(f"| best checkpoint by policy alone return | {text}) |")
    meta = summary.get("metadata") or {}
    if "preset" in meta:
        text = str(meta["preset"])
        red = meta.get("reduction_vs_paper")
        if red:
            text += (
                f" ({compare_budget(red['per_control_step'], 'simulated steps per control step')}"
                f", {compare_budget(red['per_run'], 'per run')})"
            )
        lines.append(f"| preset | {text} |")
    if "backend" in summary:
        lines.append(f"| physics backend | {summary['backend']} |")
    lines.append(f"| compile | {summary['compile_seconds']:.1f} s |")
    lines.append(f"| training this session | {summary['train_seconds_this_session']:.1f} s |")
    return "\n".join(lines) + "\n"

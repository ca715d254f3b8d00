"""TensorBoard logging of a run's metrics (optional: the ``tensorboard`` extra, tensorboardX).

:class:`MetricsWriter` is a ``callback(iteration, row)`` for :func:`apexjax.train.train`
(or :func:`apexjax.driver.fit`): each metrics row, the same row ``metrics.jsonl`` gets,
becomes one scalar per numeric key (the key is the tag) at step ``iteration``, flushed
after every row so TensorBoard shows a run while it trains. The event files go into one
directory; a resumed run appends new ones there, and the first one it writes starts at the
iteration it resumes from with a TensorBoard purge marker, so that rows of iterations
redone after the restored checkpoint replace the old ones (as ``metrics.jsonl`` is cut
back), not doubled. :func:`read_scalars` reads such a directory back with tensorboardX's
own protobufs (no ``tensorboard`` package needed) and applies the purge markers as
TensorBoard does.

This module reports through :mod:`logging` only; a directory that cannot be written turns
the logging off for the rest of the run with one warning instead of stopping the training.
"""

from __future__ import annotations

import logging
import numbers
import os
import pathlib
import struct
import time
from collections.abc import Mapping
from typing import Any

from apexjax.configs import ConfigError

__all__ = ["INSTALL_HINT", "MetricsWriter", "read_scalars", "require_tensorboardx"]

log = logging.getLogger(__name__)

#: how to install what this module needs
INSTALL_HINT = "pip install 'apexjax[tensorboard]'"


def require_tensorboardx() -> Any:
    """The ``tensorboardX`` module.

    Raises:
      ConfigError: it is not installed (one line naming the extra to install).
    """
    try:
        import tensorboardX
    except ImportError:
        raise ConfigError(
            f"TensorBoard logging needs tensorboardX, which is not installed: {INSTALL_HINT}"
        ) from None
    return tensorboardX


def _scalar(value: Any) -> float | None:
    """``value`` as a float where it is a number (bools as 0/1), else None."""
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "shape") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        item = value.item()  # a NumPy/JAX 0-d array or scalar
        if isinstance(item, numbers.Real):
            return float(item)
    return None


class MetricsWriter:
    """Writes metrics rows to TensorBoard event files in ``logdir``.

    Call it as ``writer(iteration, row)`` (the ``callback`` of
    :func:`apexjax.train.train`); :meth:`close` (or the ``with`` block) ends the file. The
    event file is created at the first row, so nothing is written where no iteration runs.
    A first row after iteration 1 (a resumed run) is preceded by TensorBoard's purge
    marker at that iteration: events at that step and later in the older files are hidden.

    Raises:
      ConfigError: tensorboardX is not installed (at construction, before any training).
    """

    def __init__(self, logdir: str | os.PathLike[str], *, flush_secs: int = 30) -> None:
        self._tbx = require_tensorboardx()
        self.logdir = pathlib.Path(logdir)
        self.flush_secs = flush_secs
        self._writer: Any = None
        self._failed = False

    def _open(self, iteration: int) -> Any:
        purge = iteration if iteration > 1 else None
        # tensorboardX names a file by the second it was opened and the host; a second
        # writer within that second would replace the first file, so add the nanoseconds
        suffix = f".{time.time_ns()}"
        return self._tbx.SummaryWriter(
            logdir=str(self.logdir),
            purge_step=purge,
            flush_secs=self.flush_secs,
            filename_suffix=suffix,
        )

    def _disable(self, e: BaseException) -> None:
        self._failed = True
        log.warning(
            "TensorBoard: cannot write to %s (%s: %s); TensorBoard logging is off for the rest "
            "of this run (metrics.jsonl has every row)",
            self.logdir,
            type(e).__name__,
            e,
        )
        self.close()

    def __call__(self, iteration: int, row: Mapping[str, Any], *_state: Any) -> None:
        # (iteration, row) as train's callback; fit's callback also passes the state
        if self._failed:
            return
        try:
            if self._writer is None:
                self._writer = self._open(int(iteration))
                log.debug("TensorBoard: writing %s", self.logdir)
            for key, value in row.items():
                x = _scalar(value)
                if x is not None:
                    self._writer.add_scalar(str(key), x, global_step=int(iteration))
            self._writer.flush()
        except OSError as e:
            self._disable(e)

    def close(self) -> None:
        """Flushes and closes the event file (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as e:  # the rows logged so far stay where they were flushed
                log.warning("TensorBoard: closing %s failed (%s)", self.logdir, e)

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _records(path: pathlib.Path) -> list[bytes]:
    """The records of one TFRecord file (a record cut short by a kill ends the list)."""
    data = path.read_bytes()
    out, i = [], 0
    while i + 12 <= len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        start = i + 12  # length, its masked crc32c
        if start + n + 4 > len(data):
            break
        out.append(data[start : start + n])
        i = start + n + 4  # the data, its masked crc32c
    return out


def read_scalars(logdir: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the event files in ``logdir``: ``{tag: [(step, value), ...]}`` in
    step order, as TensorBoard shows them (files in name order; a purge marker at step
    ``s`` drops the earlier events at ``s`` and later).

    Raises:
      ConfigError: tensorboardX is not installed.
    """
    require_tensorboardx()
    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            if (
                event.HasField("session_log")
                and event.session_log.status == event_pb2.SessionLog.START
            ):
                for steps in scalars.values():
                    for s in [s for s in steps if s >= event.step]:
                        del steps[s]
            if not event.HasField("summary"):
                continue
            for v in event.summary.value:
                if v.WhichOneof("value") == "simple_value":
                    scalars.setdefault(v.tag, {})[int(event.step)] = float(v.simple_value)
    return {tag: sorted(steps.items()) for tag, steps in scalars.items() if steps}

"""Multi-process (multi-host) start-up: one Python process per host, one mesh over all.

JAX runs one process per host (or per GPU group); :func:`initialize` connects them through
``jax.distributed`` and must run before anything starts JAX's backends. Three ways to run:

- single process (the default): nothing to do;
- explicit: every process gets the same ``coordinator`` (``HOST:PORT`` of process 0,
  reachable from every process) and ``num_processes``, and its own ``process_id``;
- ``auto``: JAX reads them from the cluster's environment (SLURM, Open MPI, Kubernetes,
  Cloud TPU; ``JAX_COORDINATOR_ADDRESS`` where set). Opt-in only, so that a single-process
  run inside a batch job never waits for peers that do not exist.

Afterwards every process runs the same program: :func:`apexjax.sharding.make_mesh` spans
the devices of all processes, each process feeds its own local devices, and the state is
replicated on all of them. Only process 0 (:func:`is_primary`) writes run files; checkpoints
are saved collectively (every process calls orbax, which writes each array once) into a run
directory that all processes must see (a shared filesystem).

On CPU the processes exchange data with gloo, JAX's default CPU collectives since 0.5.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from typing import Any

import jax

from apexjax.configs import ConfigError, check_bool, check_int

__all__ = ["DistributedConfig", "barrier", "initialize", "is_primary", "parse_address"]

log = logging.getLogger(__name__)


def parse_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 hosts in brackets: ``"[::1]:1234"``) -> ``(host, port)``.

    Raises:
      ConfigError: not ``HOST:PORT``, or the port is not in 1..65535.
    """
    example = "expected HOST:PORT of process 0, e.g. 10.0.0.1:1234"
    text = address.strip() if isinstance(address, str) else ""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ConfigError(
                f"coordinator: {address!r}: write an IPv6 host in brackets, e.g. [::1]:1234"
            )
    if not sep or not host or any(c.isspace() for c in host) or not port.isdigit():
        raise ConfigError(f"coordinator: {example}, got {address!r}")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"coordinator: port must be in 1..65535, got {port} in {address!r}")
    return host, int(port)


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How this process joins a multi-process run (validated when built).

    Attributes:
      coordinator: ``HOST:PORT`` where process 0 serves the coordination service; the
        same on every process.
      num_processes: processes in the run (>= 1); the same on every process.
      process_id: this process, in ``0 .. num_processes - 1``; process 0 is the coordinator.
      auto: let JAX detect all three from the cluster's environment instead (exclusive with
        the explicit fields).
      timeout_s: seconds to wait for all processes to connect before failing.

    All fields unset (the default) is a single-process run.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    timeout_s: int = 300

    def __post_init__(self) -> None:
        c = "DistributedConfig"
        check_int(f"{c}.num_processes", self.num_processes, ge=1, none_ok=True)
        check_int(f"{c}.process_id", self.process_id, ge=0, none_ok=True)
        check_int(f"{c}.timeout_s", self.timeout_s, ge=1)
        check_bool(f"{c}.auto", self.auto)
        if self.coordinator is not None and not isinstance(self.coordinator, str):
            raise ConfigError(
                f"{c}.coordinator: expected 'HOST:PORT' (a str), got {self.coordinator!r}"
            )
        explicit = {
            "coordinator": self.coordinator,
            "num_processes": self.num_processes,
            "process_id": self.process_id,
        }
        given = [k for k, v in explicit.items() if v is not None]
        if self.auto and given:
            raise ConfigError(
                f"distributed: auto detection excludes explicit {', '.join(given)}; "
                "give either auto or coordinator, num_processes and process_id"
            )
        if given and len(given) < 3:
            missing = [k for k in explicit if k not in given]
            raise ConfigError(
                f"distributed: coordinator, num_processes and process_id go together; "
                f"missing {', '.join(missing)}"
            )
        if self.coordinator is not None:
            parse_address(self.coordinator)
        if given and self.process_id >= self.num_processes:
            raise ConfigError(
                f"process_id: {self.process_id} is out of range for "
                f"num_processes={self.num_processes}; allowed 0..{self.num_processes - 1}"
            )

    @property
    def enabled(self) -> bool:
        """Whether this config starts ``jax.distributed`` (auto, or more than one process)."""
        return self.auto or (self.num_processes or 1) > 1


def initialize(config: DistributedConfig) -> bool:
    """Joins the multi-process run ``config`` describes; returns whether one was started.

    Call it first, before anything uses JAX (devices, arrays, jit). A single-process
    config (``num_processes`` 1 or unset, not ``auto``) does nothing.

    Before JAX is involved, the explicit address is checked: it must resolve, process 0
    must be able to listen on its port, and the others wait (up to ``timeout_s``) for
    process 0 to answer there. Past that point, a process that never joins makes JAX end
    the others with its own fatal error after ``timeout_s``.

    Raises:
      ConfigError: the coordinator's host does not resolve, its port is taken (process 0)
        or nothing answers there within ``timeout_s`` (the others), or ``auto`` found no
        cluster.
      RuntimeError: JAX already started its backends or ``jax.distributed`` (a usage
        error: start-up must come first).
    """
    if not config.enabled:
        return False
    if jax.distributed.is_initialized():
        raise RuntimeError("apexjax.distributed.initialize: jax.distributed is already started")
    kwargs: dict[str, Any] = {"initialization_timeout": config.timeout_s}
    if not config.auto:
        _check_coordinator(config)
        kwargs.update(
            coordinator_address=config.coordinator,
            num_processes=config.num_processes,
            process_id=config.process_id,
        )
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        if "before any JAX calls" in str(e):
            raise RuntimeError(
                "apexjax.distributed.initialize must run before anything uses JAX"
            ) from e
        where = "the coordinator found in the environment" if config.auto else config.coordinator
        raise ConfigError(
            f"coordinator: this process could not join the run at {where} within "
            f"{config.timeout_s} s ({type(e).__name__}: {str(e).strip()[:300]})"
        ) from None
    except (ValueError, TypeError) as e:
        if not config.auto:
            raise
        raise ConfigError(
            f"distributed auto: no cluster found in the environment ({e}); pass "
            "coordinator, num_processes and process_id instead"
        ) from None
    log.debug("jax.distributed started (%s)", config)
    return True


def _check_coordinator(config: DistributedConfig) -> None:
    """Clear errors for the common start-up mistakes, instead of a fatal abort in JAX."""
    address = config.coordinator
    host, port = parse_address(address)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(
            f"coordinator: cannot resolve host {host!r} in {address!r} ({e})"
        ) from None
    if config.process_id == 0:
        # The coordination service listens on every interface at this port.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
            except OSError as e:
                raise ConfigError(
                    f"coordinator: process 0 cannot listen on port {port} ({e.strerror}); "
                    "pick a free port for every process"
                ) from None
        return
    deadline = time.monotonic() + config.timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"coordinator: nothing answers at {address} after {config.timeout_s} s; "
                    "start process 0 there (same address and port on every process)"
                ) from None
            time.sleep(0.5)


def is_primary() -> bool:
    """Whether this is process 0, the one that writes run files (always, single-process)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches ``barrier(name)`` (no-op single-process);
    ``name`` must be the same on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)

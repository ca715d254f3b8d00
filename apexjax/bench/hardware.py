"""Hardware and software description, and JSON output, for benchmark results."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import platform
from typing import Any

import jax

__all__ = ["bench_result", "environment_info", "write_json"]

_PACKAGES = ("jax", "jaxlib", "mujoco", "mujoco-mjx", "brax", "flax", "optax", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Hardware and software the numbers were measured on (no host name).

    Keys: ``hardware`` (one readable line), ``cpu``, ``cpu_cores`` (usable by this
    process), ``jax_platform``, ``jax_devices``, ``python``, ``versions`` (package -> version).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    devices = jax.devices()
    platform_name = devices[0].platform
    kinds = sorted({d.device_kind for d in devices})
    cpu = _cpu_model()
    hardware = f"{cpu}, {cores} cores"
    if platform_name != "cpu":
        hardware += f"; {len(devices)} x {', '.join(kinds)}"
    return {
        "hardware": hardware,
        "cpu": cpu,
        "cpu_cores": cores,
        "jax_platform": platform_name,
        "jax_devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in _PACKAGES},
    }


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Writes ``obj`` as indented JSON (parent folders created); returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return path


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def bench_result(sections: list[Any], command: str, **extra: Any) -> dict[str, Any]:
    """The JSON document of one benchmark run (the format ``apexjax bench --report`` reads):
    the command, the date, :func:`environment_info`, and the sections."""
    import time

    from apexjax.bench import section_to_dict

    return {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        **extra,
        "environment": environment_info(),
        "sections": [section_to_dict(s) for s in sections],
    }

"""Splitting batches of independent episodes over devices (one code path for 1 or N).

Episodes are independent, so they need no communication: :func:`split_over_devices`
wraps a function whose arguments and results carry a leading batch axis in
``jax.shard_map``, giving each device a contiguous slice of that axis; arguments marked
replicated (the policy parameters, λ) go to every device whole. With one device it is the
plain function.

On CPU, XLA runs one device's MJX loops on one core; splitting over several host devices
uses the others. Host devices must be requested before JAX starts, by the user (apexjax
never changes ``XLA_FLAGS``)::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 apexjax train --set num_devices=2

Several processes (:mod:`apexjax.distributed`): the mesh spans the devices of all of them,
the same number from each; every process feeds its own, and state built identically on
every process (same seed) is placed across the whole mesh with :func:`replicate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from apexjax.configs import ConfigError

__all__ = ["AXIS", "make_mesh", "replicate", "shard_batch", "split_over_devices"]

AXIS = "batch"

_T = TypeVar("_T")


def make_mesh(num_devices: int) -> Mesh:
    """A 1-D mesh (axis name :data:`AXIS`) over ``num_devices`` devices.

    One process: its first ``num_devices`` local devices. Several processes
    (``jax.process_count() > 1``): ``num_devices`` counts the devices of all of them, and
    each process contributes its first ``num_devices / processes`` local devices, so that
    every process feeds the same share.

    Raises:
      ConfigError: fewer devices are available than asked for (the message says how to get
        more host devices on CPU), or ``num_devices`` is not a multiple of the process count.
    """
    processes = jax.process_count()
    if processes == 1:
        devices = jax.local_devices()
        if num_devices > len(devices):
            raise ConfigError(
                f"num_devices: {num_devices} asked for, {len(devices)} "
                f"{devices[0].platform} device(s) available{_cpu_hint(devices[0], num_devices)}"
            )
        return Mesh(devices[:num_devices], (AXIS,))
    if num_devices % processes:
        raise ConfigError(
            f"num_devices: {num_devices} cannot be shared evenly by {processes} processes; "
            f"use a multiple of {processes} (every process feeds the same number of devices)"
        )
    per = num_devices // processes
    by_process: dict[int, list[jax.Device]] = {}
    for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        by_process.setdefault(d.process_index, []).append(d)
    for p, devs in sorted(by_process.items()):
        if len(devs) < per:
            raise ConfigError(
                f"num_devices: {num_devices} over {processes} processes needs {per} device(s) "
                f"per process; process {p} has {len(devs)}{_cpu_hint(devs[0], per)}"
            )
    chosen = [d for _, devs in sorted(by_process.items()) for d in devs[:per]]
    return Mesh(np.array(chosen), (AXIS,))


def _cpu_hint(device: jax.Device, n: int) -> str:
    if device.platform != "cpu":
        return ""
    return f"; on CPU start Python with XLA_FLAGS=--xla_force_host_platform_device_count={n}"


def split_over_devices(
    fn: Callable[..., Any], mesh: Mesh | None, batched: Sequence[bool]
) -> Callable[..., Any]:
    """``fn`` with its batch split over ``mesh``'s devices.

    Args:
      fn: takes positional arguments; those flagged in ``batched`` have a leading batch
        axis (divisible by the number of devices), the others are replicated. Every result
        leaf has the leading batch axis.
      mesh: from :func:`make_mesh`; ``None`` or a single device returns ``fn`` itself.
      batched: one flag per positional argument.
    """
    if mesh is None or mesh.size == 1:
        return fn
    specs = tuple(PartitionSpec(AXIS) if b else PartitionSpec() for b in batched)
    out = PartitionSpec(AXIS)
    # The replication check is off: MJX's solver loops carry values it cannot prove
    # replicated (jax.shard_map's check_vma; check_rep in older JAX).
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=out, check_vma=False)
    from jax.experimental.shard_map import shard_map  # older JAX

    return shard_map(fn, mesh=mesh, in_specs=specs, out_specs=out, check_rep=False)


def shard_batch(tree: _T, mesh: Mesh | None) -> _T:
    """Places ``tree``'s arrays with their leading axis split over ``mesh`` (the layout
    :func:`split_over_devices` expects; arrays already on one device would otherwise be
    rejected as being on incompatible devices). ``None`` or one device: unchanged."""
    if mesh is None or mesh.size == 1:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def replicate(tree: _T, sharding: jax.sharding.Sharding) -> _T:
    """``tree``'s arrays placed whole on every device of ``sharding`` (a replicated one).

    One process: ``jax.device_put``. Several: each process builds the global arrays from its
    own copy of the values (``jax.make_array_from_callback``), which must be the same on every
    process (state built from the same seed, or restored from the same checkpoint); nothing
    is sent between processes.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree_util.tree_map(put, tree)

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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from apexjax.configs import ConfigError

__all__ = ["AXIS", "make_mesh", "shard_batch", "split_over_devices"]

AXIS = "batch"

_T = TypeVar("_T")


def make_mesh(num_devices: int) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` local devices (axis name :data:`AXIS`).

    Raises:
      ConfigError: fewer devices are available than asked for (the message says how to get
        more host devices on CPU).
    """
    devices = jax.local_devices()
    if num_devices > len(devices):
        hint = ""
        if devices[0].platform == "cpu":
            hint = (
                f"; on CPU start Python with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices}"
            )
        raise ConfigError(
            f"num_devices: {num_devices} asked for, {len(devices)} "
            f"{devices[0].platform} device(s) available{hint}"
        )
    return Mesh(devices[:num_devices], (AXIS,))


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

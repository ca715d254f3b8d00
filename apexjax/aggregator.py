"""Fixed-capacity, device-resident DAgger dataset: pure :func:`add` and :func:`sample`.

Rows are written in a ring: once ``capacity`` rows are stored, each new row overwrites
the oldest one. Every function is jit-able (the batch size ``B`` of :func:`add` and the
``batch_size`` of :func:`sample` are static shapes; the fill level is traced).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

__all__ = [
    "SOURCE_EXPERT",
    "SOURCE_POLICY",
    "Dataset",
    "add",
    "create",
    "nbytes",
    "rows_since",
    "sample",
    "valid_mask",
]

#: row came from an episode where the (guided) planner acted; the label is its action.
SOURCE_EXPERT = 0
#: row is a state the policy visited, relabelled by the planner planning from it (DAgger).
SOURCE_POLICY = 1


@struct.dataclass
class Dataset:
    """Aggregated (observation, expert action) pairs.

    Attributes:
      obs: ``[C, O]`` observations.
      actions: ``[C, A]`` expert action labels.
      source: ``[C]`` int32, :data:`SOURCE_EXPERT` or :data:`SOURCE_POLICY`.
      iteration: ``[C]`` int32, the outer APEX iteration that produced the row.
      size: int32 scalar, number of filled rows (``<= C``); rows ``[0, size)`` are valid.
      cursor: int32 scalar, the next row to write (the oldest row once full).
    """

    obs: jax.Array
    actions: jax.Array
    source: jax.Array
    iteration: jax.Array
    size: jax.Array
    cursor: jax.Array

    @property
    def capacity(self) -> int:
        """``C``, static."""
        return int(self.obs.shape[0])


def create(capacity: int, obs_dim: int, action_dim: int, dtype: Any = jnp.float32) -> Dataset:
    """Empty dataset holding up to ``capacity`` rows of ``obs [O]`` and ``actions [A]``."""
    for name, v in (("capacity", capacity), ("obs_dim", obs_dim), ("action_dim", action_dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"aggregator.create: {name} must be an int >= 1, got {v!r}")
    return Dataset(
        obs=jnp.zeros((capacity, obs_dim), dtype),
        actions=jnp.zeros((capacity, action_dim), dtype),
        source=jnp.zeros((capacity,), jnp.int32),
        iteration=jnp.zeros((capacity,), jnp.int32),
        size=jnp.zeros((), jnp.int32),
        cursor=jnp.zeros((), jnp.int32),
    )


def add(
    dataset: Dataset,
    obs: jax.Array,
    actions: jax.Array,
    source: Any,
    iteration: Any,
    mask: jax.Array | None = None,
) -> Dataset:
    """Appends the rows of ``obs [B, O]``, ``actions [B, A]`` where ``mask [B]`` is True.

    ``source`` and ``iteration`` are int scalars or ``[B]``. Valid rows are written in
    order at the cursor, wrapping around and overwriting the oldest rows when full; if
    more than ``C`` rows are valid, only the last ``C`` of them are kept.
    """
    C = dataset.capacity
    obs = jnp.asarray(obs)
    actions = jnp.asarray(actions)
    B = obs.shape[0]
    if obs.ndim != 2 or obs.shape[1:] != dataset.obs.shape[1:]:
        raise ValueError(
            f"aggregator.add: obs must have shape [B, {dataset.obs.shape[1]}], got {obs.shape}"
        )
    if actions.shape != (B, dataset.actions.shape[1]):
        raise ValueError(
            f"aggregator.add: actions must have shape [{B}, {dataset.actions.shape[1]}], "
            f"got {actions.shape}"
        )
    valid = jnp.ones((B,), bool) if mask is None else jnp.asarray(mask, bool).reshape(B)
    rank = jnp.cumsum(valid.astype(jnp.int32)) - 1  # position among the valid rows
    n = jnp.sum(valid.astype(jnp.int32))
    # Dropping all but the last C valid rows keeps scatter indices unique (no write races).
    keep = valid & (rank >= n - C)
    pos = jnp.where(keep, (dataset.cursor + rank) % C, C)  # C is out of range: dropped
    source = jnp.broadcast_to(jnp.asarray(source, jnp.int32), (B,))
    iteration = jnp.broadcast_to(jnp.asarray(iteration, jnp.int32), (B,))

    def put(buf, rows):
        return buf.at[pos].set(rows.astype(buf.dtype), mode="drop")

    return Dataset(
        obs=put(dataset.obs, obs),
        actions=put(dataset.actions, actions),
        source=put(dataset.source, source),
        iteration=put(dataset.iteration, iteration),
        size=jnp.minimum(dataset.size + n, C).astype(jnp.int32),
        cursor=((dataset.cursor + n) % C).astype(jnp.int32),
    )


def valid_mask(dataset: Dataset) -> jax.Array:
    """``[C]`` bool, True for the filled rows."""
    return jnp.arange(dataset.capacity) < dataset.size


def rows_since(dataset: Dataset, iteration: Any) -> jax.Array:
    """int32 scalar: how many of the newest rows were written by outer iteration
    ``iteration`` or later, the ``newest`` argument of :func:`sample` that draws from the
    last few iterations' data.

    Counted from the newest row back, up to the first row of an earlier iteration, or of a
    later-numbered one: rows carried from another run (:func:`apexjax.train.init_state_from`)
    keep that run's iteration numbers, and are older than every row of this run whatever
    their number.
    """
    C = dataset.capacity
    back = jnp.arange(C)
    its = dataset.iteration[(dataset.cursor - 1 - back) % C]  # newest first
    newer = jnp.concatenate([jnp.full((1,), jnp.iinfo(jnp.int32).max, jnp.int32), its[:-1]])
    ok = (back < dataset.size) & (its >= jnp.asarray(iteration, jnp.int32)) & (its <= newer)
    return jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))


def sample(
    dataset: Dataset, key: jax.Array, batch_size: int, newest: Any = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Uniform draw, with replacement, of ``batch_size`` filled rows.

    ``newest`` (an int, may be traced): draw from the ``newest`` most recently written rows
    only (clipped to the filled rows; see :func:`rows_since`). ``None``, or a count that
    covers every filled row, draws from all of them, exactly as without it; 0 draws
    nothing (zero weights, as for an empty dataset).

    Returns ``(obs [B, O], actions [B, A], weights [B])``; weights are 1, or all 0 with
    zero rows when the dataset is empty (so a weighted loss over them is 0).
    """
    nonempty = dataset.size > 0
    if newest is None:
        idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(dataset.size, 1))
    else:
        n = jnp.clip(jnp.asarray(newest, jnp.int32), 0, dataset.size)
        # the n newest rows end just before the cursor; all of them: rows 0 .. size-1 as above
        first = jnp.where(n >= dataset.size, 0, (dataset.cursor - n) % dataset.capacity)
        r = jax.random.randint(key, (batch_size,), 0, jnp.maximum(n, 1))
        idx = (first + r) % dataset.capacity
        nonempty = n > 0
    obs = jnp.where(nonempty, dataset.obs[idx], 0)
    actions = jnp.where(nonempty, dataset.actions[idx], 0)
    weights = jnp.full((batch_size,), nonempty, jnp.float32)
    return obs, actions, weights


def nbytes(dataset: Dataset) -> int:
    """Bytes held by the dataset's arrays (works on concrete or abstract arrays)."""
    return sum(
        math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(dataset)
    )

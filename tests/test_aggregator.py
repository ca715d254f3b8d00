"""DAgger dataset: ring order, masks, metadata, sampling, empty dataset, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax import aggregator as agg

# One compiled add per input shape: cheaper than dispatching its ops one by one.
_add = jax.jit(agg.add)


def _rows(start, n, obs_dim=2, act_dim=1):
    ids = np.arange(start, start + n, dtype=np.float32)
    obs = np.stack([ids] * obs_dim, axis=1)
    return jnp.asarray(obs), jnp.asarray(-ids[:, None].repeat(act_dim, 1))


def test_add_in_order_then_ring_overwrites_oldest():
    ds = agg.create(5, 2, 1)
    o, a = _rows(0, 3)
    ds = _add(ds, o, a, agg.SOURCE_EXPERT, 0)
    assert int(ds.size) == 3 and int(ds.cursor) == 3
    np.testing.assert_array_equal(ds.obs[:3, 0], [0, 1, 2])
    o, a = _rows(3, 4)
    ds = _add(ds, o, a, agg.SOURCE_POLICY, 1)
    assert int(ds.size) == 5 and int(ds.cursor) == 2
    # Rows 0 and 1 (the oldest) were overwritten by 5 and 6.
    np.testing.assert_array_equal(ds.obs[:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(ds.actions[:, 0], [-5, -6, -2, -3, -4])
    np.testing.assert_array_equal(ds.source, [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(ds.iteration, [1, 1, 0, 1, 1])


def test_batch_larger_than_capacity_keeps_last_rows():
    ds = agg.create(4, 2, 1)
    o, a = _rows(0, 1)
    ds = _add(ds, o, a, 0, 0)
    o, a = _rows(1, 10)
    ds = _add(ds, o, a, 0, 0)
    assert int(ds.size) == 4 and int(ds.cursor) == 3
    # Last 4 rows (7..10) kept; the oldest of them (7) sits at the cursor.
    np.testing.assert_array_equal(ds.obs[:, 0], [8, 9, 10, 7])


def test_mask_skips_rows_and_per_row_metadata():
    ds = agg.create(6, 2, 1)
    o, a = _rows(0, 5)
    mask = jnp.array([True, False, True, False, True])
    ds = _add(ds, o, a, jnp.array([0, 1, 1, 0, 1]), jnp.arange(5) + 10, mask)
    assert int(ds.size) == 3 and int(ds.cursor) == 3
    np.testing.assert_array_equal(ds.obs[:3, 0], [0, 2, 4])
    np.testing.assert_array_equal(ds.source[:3], [0, 1, 1])
    np.testing.assert_array_equal(ds.iteration[:3], [10, 12, 14])
    np.testing.assert_array_equal(ds.obs[3:], 0)
    np.testing.assert_array_equal(agg.valid_mask(ds), [1, 1, 1, 0, 0, 0])


def test_jit_add_and_sample_uniform_over_filled_part():
    add = _add
    sample = jax.jit(agg.sample, static_argnums=2)
    ds = agg.create(16, 2, 1)
    o, a = _rows(0, 4)
    ds = add(ds, o, a, 0, 0, jnp.array([True, True, True, False]))
    o, a = _rows(4, 4)
    ds = add(ds, o, a, 1, 1, jnp.zeros(4, bool))  # nothing written
    assert int(ds.size) == 3
    obs, act, w = sample(ds, jax.random.key(0), 600)
    assert obs.shape == (600, 2) and act.shape == (600, 1) and w.shape == (600,)
    np.testing.assert_array_equal(w, 1.0)
    np.testing.assert_array_equal(act[:, 0], -obs[:, 0])  # pairs stay together
    counts = np.bincount(np.asarray(obs[:, 0]).astype(int), minlength=3)
    assert counts.shape == (3,) and counts.min() > 150


def test_newest_rows_only_and_all_rows_exactly_as_without():
    sample = jax.jit(agg.sample, static_argnums=2)
    ds = agg.create(6, 2, 1)
    for it, start in enumerate((0, 2, 4, 6)):  # 2 rows per iteration; the ring wraps once
        o, a = _rows(start, 2)
        ds = _add(ds, o, a, 0, it)
    # rows 2..7 are held, in slots [6, 7, 2, 3, 4, 5]; iterations 1, 2, 3
    assert [int(agg.rows_since(ds, i)) for i in (0, 1, 2, 3, 4)] == [6, 6, 4, 2, 0]
    key = jax.random.key(3)
    ref = sample(ds, key, 64)
    for newest in (None, 6, 100):  # every held row: the draw without ``newest``, bit for bit
        got = sample(ds, key, 64, newest)
        for x, y in zip(got, ref, strict=True):
            np.testing.assert_array_equal(x, y)
    for since, ids in ((2, {4, 5, 6, 7}), (3, {6, 7})):  # across the ring's end
        obs, act, w = sample(ds, key, 400, agg.rows_since(ds, since))
        assert set(np.asarray(obs[:, 0]).astype(int)) == ids
        np.testing.assert_array_equal(act[:, 0], -obs[:, 0])
        np.testing.assert_array_equal(w, 1.0)
    _, _, w = sample(ds, key, 8, agg.rows_since(ds, 4))  # no row that new: nothing drawn
    np.testing.assert_array_equal(w, 0.0)
    small = _add(agg.create(10, 2, 1), *_rows(0, 3), 0, 0)  # not full: the newest 2 of 3
    obs, _, _ = sample(_add(small, *_rows(3, 2), 0, 1), key, 200, 2)
    assert set(np.asarray(obs[:, 0]).astype(int)) == {3, 4}
    # rows carried from another run (its iterations 7, 8) before this run's 0 and 1
    carried = _add(_add(agg.create(10, 2, 1), *_rows(0, 2), 0, 7), *_rows(2, 2), 0, 8)
    ours = _add(_add(carried, *_rows(4, 3), 0, 0), *_rows(7, 1), 0, 1)
    assert [int(agg.rows_since(ours, i)) for i in (0, 1, 2)] == [4, 1, 0]


def test_empty_dataset_samples_zero_weight():
    ds = agg.create(8, 3, 2)
    obs, act, w = agg.sample(ds, jax.random.key(0), 5)
    assert obs.shape == (5, 3) and act.shape == (5, 2)
    np.testing.assert_array_equal(w, 0.0)
    np.testing.assert_array_equal(obs, 0.0)


def test_nbytes_and_validation():
    ds = agg.create(10, 3, 2)
    assert agg.nbytes(ds) == 10 * 3 * 4 + 10 * 2 * 4 + 10 * 4 + 10 * 4 + 4 + 4
    assert agg.nbytes(jax.eval_shape(lambda: agg.create(10, 3, 2))) == agg.nbytes(ds)
    with pytest.raises(ValueError, match="capacity"):
        agg.create(0, 3, 2)
    with pytest.raises(ValueError, match="obs must have shape"):
        agg.add(ds, jnp.zeros((4, 2)), jnp.zeros((4, 2)), 0, 0)

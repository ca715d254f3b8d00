"""The native backend: MuJoCo's C library behind ``Task.step``, inside ``jax.jit``.

Checked against plain MuJoCo, bit for bit: a control step, a scan of steps and a fused
open-loop rollout all give the exact ``mjSTATE_INTEGRATION`` rows (warm start included)
of a single-threaded ``mj_step`` loop over one ``MjData``, whatever the thread count, and
the derived fields a task reads are MuJoCo's at the new state. Batched under vmap (of
vmap), scan and shard_map; divergence is flagged as MJX's is; gradients are refused.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import apexjax.envs as envs
from apexjax.configs import ConfigError
from apexjax.envs.native import NativeData, NotDifferentiableError
from apexjax.planning.rollout import rollout_open_loop

SPEC = mujoco.mjtState.mjSTATE_INTEGRATION
H = 6


@functools.cache
def _task(name: str, threads: int = 0) -> envs.MujocoTask:
    return envs.make(name, backend="native", native_threads=threads)


def _rows(data: NativeData) -> np.ndarray:
    """float64 integration state rows ``[..., nstate]`` of native data."""
    return np.asarray(data.state).view(np.float64)


def _plain(task, start_row, actions, door_pos=None):
    """A single-threaded mj_step loop from ``start_row`` (the door's frame at
    ``door_pos``): the state rows and the MjData after each control step."""
    m = copy.copy(task.mj_model)
    if door_pos is not None:
        m.body_pos[task._frame] = np.asarray(door_pos, np.float64)
    d = mujoco.MjData(m)
    mujoco.mj_setState(m, d, start_row, SPEC)
    rows, datas = [], []
    for a in actions:
        d.ctrl[:] = np.asarray(a, np.float64)
        for _ in range(task.frame_skip):
            mujoco.mj_step(m, d)
        row = np.empty(mujoco.mj_stateSize(m, SPEC))
        mujoco.mj_getState(m, d, row, SPEC)
        rows.append(row)
        fresh = mujoco.MjData(m)
        mujoco.mj_setState(m, fresh, row, SPEC)
        mujoco.mj_forward(m, fresh)  # derived fields at the new state
        datas.append(fresh)
    return np.array(rows), datas


def _actions(task, seed=0, n=H):
    lo, hi = task.action_bounds
    return np.random.default_rng(seed).uniform(lo, hi, (n, task.action_dim)).astype(np.float32)


@functools.cache
def _runs(name: str, threads: int = 0):
    """From one reset: the scan of steps and the fused rollout (states ``[H]``)."""
    task = _task(name, threads)
    start = jax.jit(task.reset)(jax.random.key(1))
    actions = jnp.asarray(_actions(task))

    def scan(s, acts):
        return jax.lax.scan(lambda s, a: (task.step(s, a),) * 2, s, acts)[1]

    stepped = jax.jit(scan)(start, actions)
    fused = jax.jit(task.simulate)(start, actions)
    return task, start, np.asarray(actions), stepped, fused


@pytest.mark.parametrize("name", ["cartpole_swingup", "door"])
def test_bit_identical_to_a_plain_mj_step_loop(name):
    task, start, actions, stepped, fused = _runs(name)
    want, datas = _plain(task, _rows(start.data), actions, start.info.get("door_pos"))
    assert np.abs(want[:, task.native._slice["qvel"]]).max() > 0.01  # it moves
    warm = task.native._slice["warmstart"]
    if name == "door":  # contacts and joint limits: the solver's warm start is in the row
        assert np.abs(want[:, warm]).max() > 0
    np.testing.assert_array_equal(_rows(stepped.data), want)
    np.testing.assert_array_equal(_rows(fused.data), want)
    for field in task.derived_fields:
        ref = np.array([getattr(d, field) for d in datas], np.float32)
        np.testing.assert_array_equal(
            np.asarray(getattr(fused.data, field)), ref.reshape(getattr(fused.data, field).shape)
        )
        np.testing.assert_array_equal(
            np.asarray(getattr(stepped.data, field)), np.asarray(getattr(fused.data, field))
        )
    np.testing.assert_array_equal(
        np.asarray(stepped.data.qpos), want[:, 1 : 1 + task.mj_model.nq].astype(np.float32)
    )
    np.testing.assert_array_equal(np.asarray(fused.t), np.arange(1, H + 1))
    # a second rollout of the same size records into the first one's (reused) buffers
    other = _actions(task, seed=1)
    again = jax.jit(task.simulate)(start, jnp.asarray(other))
    want2, _ = _plain(task, _rows(start.data), other, start.info.get("door_pos"))
    np.testing.assert_array_equal(_rows(again.data), want2)
    assert np.abs(want2 - want).max() > 0


def test_trace_records_every_c_call_for_replay():
    """With ``trace`` on, every call into MuJoCo is logged with what it started from; a
    plain mj_step loop from the logged rows and model fields gives the call's result."""
    task = envs.make("door", backend="native")
    keys = jax.random.split(jax.random.key(4), 2)
    starts = jax.jit(jax.vmap(task.reset))(keys)
    actions = jnp.asarray(np.stack([_actions(task, seed=s) for s in (5, 6)]))
    task.native.trace = []
    try:
        fused = jax.jit(jax.vmap(task.simulate))(starts, actions)
        stepped = jax.jit(jax.vmap(task.step))(starts, actions[:, 0])
        calls = list(task.native.trace)
    finally:
        task.native.trace = None
    assert [c.kind for c in calls] == ["rollout", "step"]
    roll, step = calls
    nstate, fs = task.native.nstate, task.frame_skip
    assert roll.rows.shape == (2, nstate) and roll.ids is None
    assert roll.nstep == H * fs + 1  # one substep past the horizon for the derived fields
    assert roll.control.shape == (2, roll.nstep, task.action_dim)
    assert step.nstep == fs and step.control is None and step.seconds > 0
    body = np.asarray(starts.info["door_pos"], np.float64)
    for e in range(2):
        np.testing.assert_array_equal(
            roll.model_values["body_pos"][e, task._frame].astype(np.float32),
            body[e].astype(np.float32),
        )
        np.testing.assert_array_equal(roll.rows[e], _rows(starts.data)[e])
        m = copy.copy(task.mj_model)
        for k, v in step.model_values.items():
            getattr(m, k)[...] = v[e]
        d = mujoco.MjData(m)
        mujoco.mj_setState(m, d, step.rows[e], SPEC)  # ctrl already written
        np.testing.assert_array_equal(d.ctrl, np.asarray(actions[e, 0], np.float64))
        for _ in range(fs):
            mujoco.mj_step(m, d)
        row = np.empty(nstate)
        mujoco.mj_getState(m, d, row, SPEC)
        np.testing.assert_array_equal(row, _rows(stepped.data)[e])
        np.testing.assert_array_equal(row, _rows(fused.data)[e, 0])
    assert task.native.trace is None  # off again: later calls log nothing
    jax.jit(jax.vmap(task.step))(starts, actions[:, 1])


def test_results_do_not_depend_on_the_thread_count():
    *_, fused_auto = _runs("door")
    *_, fused_one = _runs("door", threads=1)
    np.testing.assert_array_equal(
        np.asarray(fused_one.data.state), np.asarray(fused_auto.data.state)
    )


def test_make_data_is_mujocos_default_state_with_derived_fields():
    task = _task("reacher")
    qpos, qvel = jnp.array([0.3, -0.2]), jnp.array([0.1, 0.5])
    data = task.make_data(qpos, qvel)
    m = task.mj_model
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:] = np.asarray(qpos, np.float64), np.asarray(qvel, np.float64)
    mujoco.mj_forward(m, d)
    row = np.empty(mujoco.mj_stateSize(m, SPEC))
    mujoco.mj_getState(m, d, row, SPEC)
    np.testing.assert_array_equal(_rows(data), row)
    np.testing.assert_array_equal(np.asarray(data.xpos), d.xpos.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(data.mocap_pos), d.mocap_pos.astype(np.float32))


def test_vmap_of_vmap_is_one_batch_and_equals_single_calls():
    task = _task("cartpole_swingup")
    keys = jax.random.split(jax.random.key(3), 6)
    states = jax.jit(jax.vmap(task.reset))(keys)
    acts = jnp.asarray(_actions(task, seed=2, n=6))
    calls = []
    orig = task.native.step

    def counted(*args):
        calls.append(np.shape(args[0]))
        return orig(*args)

    task.native.step = counted
    try:
        grid = jax.tree.map(lambda x: x.reshape(2, 3, *x.shape[1:]), (states, acts))
        nested = jax.jit(jax.vmap(jax.vmap(task.step)))(*grid)
        flat = jax.jit(jax.vmap(task.step))(states, acts)
        one = task.step(jax.tree.map(lambda x: x[4], states), acts[4])
    finally:
        task.native.step = orig
    # one host call per batched step, with every environment in it
    assert (2, 3, 2 * task.native.nstate) in calls and (6, 2 * task.native.nstate) in calls
    np.testing.assert_array_equal(
        np.asarray(nested.data.state).reshape(6, -1), np.asarray(flat.data.state)
    )
    np.testing.assert_array_equal(np.asarray(one.data.state), np.asarray(flat.data.state[4]))


def test_fused_and_scanned_rollouts_cost_alike():
    task, start, actions, *_ = _runs("door")
    extra = lambda s, a, s2: jnp.sum(s2.data.site_xpos)  # noqa: E731
    fused = jax.jit(lambda s, a: rollout_open_loop(task, s, a, extra))(start, actions)
    assert task.simulate_is_fused

    class Scanned(type(task)):
        simulate_is_fused = False  # the lax.scan path of the same task

    scanned_task = Scanned(task.config)
    scanned = jax.jit(lambda s, a: rollout_open_loop(scanned_task, s, a, extra))(start, actions)
    # the physics is the same bits on both paths (the tests above); the two programs may sum
    # the site positions in a different order, so the costs agree to float32 rounding
    for x, y in zip(fused[:2], scanned[:2], strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=0)
    assert bool(fused[3]) and bool(scanned[3])


def test_rollouts_not_kept_resumable_read_alike_and_cannot_be_stepped_from():
    """simulate(resumable=False), as the planner's rollouts ask: the same views, derived
    fields, observations and costs as a resumable rollout (the door: derived fields and a
    per-episode model field), a NaN state that steps on to a non-finite one, and the
    divergence flag kept."""
    task, start, actions, *_ = _runs("door")
    extra = lambda s, a, s2: jnp.sum(s2.data.site_xpos)  # noqa: E731
    full = jax.jit(lambda s, a: rollout_open_loop(task, s, a, extra))(start, actions)
    fast = jax.jit(lambda s, a: rollout_open_loop(task, s, a, extra, resumable=False))(
        start, actions
    )
    for x, y in zip(full[:2], fast[:2], strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert bool(fast[3])
    states = jax.jit(lambda s, a: task.simulate(s, a))(start, actions)
    light = jax.jit(lambda s, a: task.simulate(s, a, resumable=False))(start, actions)
    for k, v in states.data.views.items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(light.data.views[k]), err_msg=k)
    assert np.isnan(np.asarray(light.data.state).view(np.float64)).all()
    last = jax.tree.map(lambda x: x[-1], light)
    assert bool(task.is_finite(last))
    assert not bool(task.is_finite(jax.jit(task.step)(last, actions[0])))

    cart = _task("cartpole_swingup")
    s = cart.reset(jax.random.key(0))
    bad = jnp.array([[0.1], [jnp.nan], [0.2]])
    *_, finite = rollout_open_loop(cart, s, bad, resumable=False)
    assert not bool(finite)


def test_divergence_is_flagged_and_stays():
    task = _task("cartpole_swingup")
    s = task.reset(jax.random.key(0))
    bad = task.step(s, jnp.array([jnp.nan]))  # MuJoCo would zero the control and carry on
    assert not bool(task.is_finite(bad))
    again = task.step(bad, jnp.array([0.5]))
    assert not bool(task.is_finite(again))
    _, _, final, finite = rollout_open_loop(task, s, jnp.array([[0.1], [jnp.nan], [0.2]]))
    assert not bool(finite) and not bool(task.is_finite(final))
    ok = rollout_open_loop(task, s, jnp.array([[0.1], [0.3], [0.2]]))
    assert bool(ok[3])


def test_host_calls_carry_every_dtype_and_big_operands_in_pieces(monkeypatch):
    """A host call packs its 4-byte operands into one uint32 matrix and unpacks its 4-byte
    results from one; other dtypes travel on their own. Every value arrives as sent, under
    vmap of vmap, including operands cut into several pieces and zero-size ones."""
    from apexjax.envs import native

    monkeypatch.setattr(native, "_CHUNK_BYTES", 64)  # several pieces per operand
    seen = []

    def fn(f, i, u, b, h, empty):
        seen.append(tuple(x.dtype for x in (f, i, u, b, h, empty)))
        return f * 2, i + 1, ~b, u, h, f.sum(axis=-1) > 0, empty

    shapes = [
        jax.ShapeDtypeStruct((3,), jnp.float32),
        jax.ShapeDtypeStruct((2, 2), jnp.int32),
        jax.ShapeDtypeStruct((1,), jnp.bool_),
        jax.ShapeDtypeStruct((5,), jnp.uint32),
        jax.ShapeDtypeStruct((4,), jnp.float16),
        jax.ShapeDtypeStruct((), jnp.bool_),
        jax.ShapeDtypeStruct((0,), jnp.float32),
    ]
    rng = np.random.default_rng(0)
    args = (
        rng.normal(size=(2, 3, 3)).astype(np.float32),
        rng.integers(-5, 5, (2, 3, 2, 2)).astype(np.int32),
        rng.integers(0, 2**32, (2, 3, 5), dtype=np.uint64).astype(np.uint32),
        rng.integers(0, 2, (2, 3, 1)).astype(bool),
        rng.normal(size=(2, 3, 4)).astype(np.float16),
        np.zeros((2, 3, 0), np.float32),
    )
    call = lambda *a: native._host_call(fn, shapes, a)  # noqa: E731
    out = jax.jit(jax.vmap(jax.vmap(call)))(*args)
    f, i, u, b, h, empty = args
    want = (f * 2, i + 1, ~b, u, h, f.sum(axis=-1) > 0, empty)
    for got, w in zip(out, want, strict=True):
        assert got.dtype == w.dtype and got.shape == w.shape
        np.testing.assert_array_equal(np.asarray(got), w)
    assert seen[0] == (np.float32, np.int32, np.uint32, np.bool_, np.float16, np.float32)


def test_gradients_are_refused_with_a_clear_error():
    task = _task("cartpole_swingup")
    s = task.reset(jax.random.key(0))

    def f(a):
        return task.cost(s, a, task.step(s, a))

    with pytest.raises(NotDifferentiableError, match="backend='mjx'"):
        jax.grad(f)(jnp.array([0.2]))


def test_undeclared_derived_field_names_the_fix():
    task = _task("cartpole_swingup")
    s = task.reset(jax.random.key(0))
    with pytest.raises(AttributeError, match="derived_fields"):
        _ = s.data.site_xpos


def test_backend_choice():
    assert envs.resolve_backend("auto") == ("native" if jax.default_backend() == "cpu" else "mjx")
    assert envs.make("pendulum_swingup").backend == envs.resolve_backend("auto")
    with pytest.raises(ConfigError, match=r"'auto', 'mjx', 'native'"):
        envs.make("pendulum_swingup", backend="warp")
    with pytest.raises(ConfigError, match="pure JAX"):
        envs.make("point_mass", backend="native")
    assert envs.make("point_mass", backend="auto").name == "point_mass"
    with pytest.raises(ConfigError, match=r"brax:inverted_pendulum.*native"):
        envs.make("brax:inverted_pendulum", backend="native")
    with pytest.raises(ConfigError, match="native_threads"):
        envs.make("pendulum_swingup", native_threads=-1)


SHARDED = textwrap.dedent(
    """
    import threading, time
    import jax, jax.numpy as jnp, numpy as np
    import apexjax.envs as envs
    from apexjax.sharding import make_mesh, shard_batch, split_over_devices

    assert jax.device_count() == 2
    task = envs.make("door", backend="native")
    active, peak, lock = [0], [0], threading.Lock()
    orig = task.native.rollout

    def watched(*args):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.05)  # long enough for the other shard's call to arrive
            return orig(*args)
        finally:
            with lock:
                active[0] -= 1

    task.native.rollout = watched
    keys = jax.random.split(jax.random.key(0), 4)
    states = jax.jit(jax.vmap(task.reset))(keys)
    lo, hi = task.action_bounds
    acts = jax.random.uniform(jax.random.key(1), (4, 5, task.action_dim), minval=lo, maxval=hi)
    fn = jax.vmap(lambda s, a: task.simulate(s, a).data.state)
    one = np.asarray(jax.jit(fn)(states, acts))
    mesh = make_mesh(2)
    split = jax.jit(split_over_devices(fn, mesh, (True, True)))
    two = np.asarray(split(*shard_batch((states, acts), mesh)))
    np.testing.assert_array_equal(one, two)
    assert peak[0] == 2, peak  # the shards' host calls ran at the same time

    # Operands above XLA's 100 KiB inline-copy size on both shards at once: before they
    # were split into pieces, this deadlocked XLA's CPU thread pool (two cores).
    cp = envs.make("cartpole_swingup", backend="native")
    n = 2048
    row = 4 * cp.native.nstate * 2
    assert n // 2 * row > 100 * 1024, row
    big = jax.jit(jax.vmap(cp.reset))(jax.random.split(jax.random.key(2), n))
    u = jnp.zeros((n, cp.action_dim))

    def scanned(s, a):
        return jax.lax.scan(lambda c, _: (jax.vmap(cp.step)(c, a), None), s, None, length=5)[0]

    ref = np.asarray(jax.jit(scanned)(big, u).data.state)
    out = jax.jit(split_over_devices(scanned, mesh, (True, True)))(*shard_batch((big, u), mesh))
    np.testing.assert_array_equal(ref, np.asarray(out.data.state))
    print("ok")
    """
)


def test_shard_map_over_host_devices_runs_concurrently_and_equals_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]

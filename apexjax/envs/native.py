"""Native MuJoCo physics inside ``jax.jit``: MuJoCo's C library, called through a host callback.

A task on the ``native`` backend keeps in ``State.data`` a :class:`NativeData`: the exact
float64 integration state of MuJoCo (``mjSTATE_INTEGRATION``: time, qpos, qvel, act,
the solver's warm start, controls, mocap poses, ...) as raw bits, and float32 copies of
what the task reads (qpos, qvel, act, time, and the derived quantities it declares, such
as ``xpos`` or ``site_xpos``), evaluated at the state they belong to.

One control step of a whole batch is one host call: under ``jax.vmap`` (of any depth) the
callback receives every environment and candidate at once, loads them into the state
rows of a :class:`mujoco.batch.Batch`, runs ``frame_skip`` ``mj_step`` calls on MuJoCo's
own thread pool, computes the position and velocity stages at the new state, and copies
the results back. Results are bit-identical to a plain ``mj_step`` loop over one
``MjData`` per simulation, warm start included, at any thread count.

Concurrency: the shards of a ``jax.shard_map`` over host devices call back at the same
time; every call takes its own ``Batch`` from a pool guarded by a lock, so the calls run
concurrently and never share buffers.

Divergence: a simulation that MuJoCo flags as unstable (bad qpos, qvel, qacc or ctrl:
MuJoCo would reset it and carry on) comes back with NaN qpos and qvel, and a non-finite
state stays so in later calls, exactly as a diverged MJX simulation does; planners then
treat its rollout as non-finite (cost +inf, never an elite).

Not differentiable: the physics is a host call. Differentiating through it raises
:class:`NotDifferentiableError`; use the ``mjx`` backend for gradients.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from mujoco import batch as mj_batch

__all__ = [
    "DERIVED_FIELDS",
    "NativeCall",
    "NativeData",
    "NativeSim",
    "NotDifferentiableError",
    "default_threads",
]

_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION
# Derived MjData fields a task may declare, by the forward stage that computes them
# ("pos": mj_kinematics, "com": + mj_comPos, "vel": + mj_comVel); the MJX backend
# recomputes the same stages after a step.
DERIVED_FIELDS: dict[str, str] = {
    "xpos": "pos",
    "xquat": "pos",
    "xmat": "pos",
    "xipos": "pos",
    "ximat": "pos",
    "xanchor": "pos",
    "xaxis": "pos",
    "geom_xpos": "pos",
    "geom_xmat": "pos",
    "site_xpos": "pos",
    "site_xmat": "pos",
    "subtree_com": "com",
    "cinert": "com",
    "cdof": "com",
    "cvel": "vel",
}
# A float64 NaN as the two uint32 words of a state row: the state of a rollout that was not
# kept resumable (stepping from it gives a diverged simulation)
_NAN_STATE = np.array([np.nan]).view(np.uint32)
# State components read as float32 views, in the order the callback returns them.
_VIEWS = ("time", "qpos", "qvel", "act")
# Components the task sets before a step (apply_action): written into the state rows.
_INPUTS = ("ctrl", "mocap_pos", "mocap_quat")
_BAD = [
    int(w)
    for w in (
        mujoco.mjtWarning.mjWARN_BADQPOS,
        mujoco.mjtWarning.mjWARN_BADQVEL,
        mujoco.mjtWarning.mjWARN_BADQACC,
        mujoco.mjtWarning.mjWARN_BADCTRL,
    )
]
assert _BAD == list(range(_BAD[0], _BAD[-1] + 1))  # read as one slice of the counters


class NotDifferentiableError(TypeError):
    """Raised when JAX differentiates through native MuJoCo physics."""


def default_threads() -> int:
    """MuJoCo threads per host call: the usable CPUs shared by this process's devices
    (their shards call back concurrently), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jax.local_device_count()))


@struct.dataclass
class NativeData:
    """A native simulation's state as a pytree (one environment; vmap for several).

    Attributes:
      state: uint32 ``[2 * nstate]``: the bits of MuJoCo's float64 integration state row,
        the exact state the next step continues from.
      ctrl: float32 ``[nu]``, actuator controls for the next step.
      mocap_pos: float32 ``[nmocap, 3]``; mocap_quat: float32 ``[nmocap, 4]``.
      views: float32 copies of ``time``, ``qpos``, ``qvel``, ``act`` and the task's
        derived fields (``xpos``, ``site_xpos``, ...), read as attributes:
        ``data.qpos``. They are outputs of the physics: a task sets ``ctrl`` and the
        mocap poses (``data.replace(ctrl=...)``) and builds states with
        ``task.make_data``, never by writing ``qpos``.
    """

    state: jax.Array
    ctrl: jax.Array
    mocap_pos: jax.Array
    mocap_quat: jax.Array
    views: dict[str, jax.Array]

    def replace(self, **changes: Any) -> NativeData:
        """A copy with ``changes`` to ``state``, ``ctrl``, ``mocap_pos``, ``mocap_quat`` or
        ``views``; the views (``qpos``, ``qvel``, ...) are outputs of the physics."""
        outputs = sorted(set(changes) - {"state", "ctrl", "mocap_pos", "mocap_quat", "views"})
        if outputs:
            raise TypeError(
                f"NativeData: {', '.join(outputs)} are outputs of native physics and cannot "
                "be written; set ctrl or the mocap poses, and build a state at given qpos/qvel "
                "with task.make_data(qpos, qvel, info)"
            )
        return dataclasses.replace(self, **changes)

    def __getattr__(self, name: str) -> jax.Array:
        # only called for names that are not dataclass fields
        if name.startswith("__") or name == "views":
            raise AttributeError(name)
        views = self.__dict__.get("views") or {}
        if name in views:
            return views[name]
        raise AttributeError(
            f"NativeData has no field {name!r}: a task reads derived quantities it lists in "
            f"its derived_fields (allowed: {', '.join(sorted(DERIVED_FIELDS))}); it has "
            f"{', '.join(sorted(views))}"
        )


@dataclasses.dataclass(frozen=True)
class NativeCall:
    """One call into MuJoCo's C library by a :class:`NativeSim`, as kept in its ``trace``:
    enough to replay the same physics outside JAX (profiling, raw baselines).

    Attributes:
      kind: ``"step"`` (``Batch.step`` of ``nstep`` substeps, the inputs in ``rows``) or
        ``"rollout"`` (``Batch.rollout`` of ``nstep`` substeps with ``control``).
      rows: float64 ``[n, nstate]``: the ``mjSTATE_INTEGRATION`` rows the call started
        from, inputs (ctrl, mocap poses) already written.
      model_values: per-simulation model fields, name -> ``[n, ...]`` float64.
      ids: the simulations that ran (the others had diverged), or None for all.
      nstep: substeps.
      control: ``[len(ids or n), nstep, nu]`` float64 controls of a rollout; None for a step.
      stage: the forward stage computed after a step (``mjtStage``).
      seconds: wall time of the C call alone.
    """

    kind: str
    rows: np.ndarray
    model_values: dict[str, np.ndarray]
    ids: np.ndarray | None
    nstep: int
    control: np.ndarray | None
    stage: int
    seconds: float


def _offsets(model: mujoco.MjModel) -> dict[str, tuple[int, int]]:
    """(offset, size) of each component of the integration state row."""
    out, offset = {}, 0
    members = sorted(mujoco.mjtState.__members__.items(), key=lambda kv: int(kv[1]))
    for key, bit in members:
        b = int(bit)
        if b == 0 or b & (b - 1) or not (int(_SPEC) & b):
            continue  # not a single component of the integration state
        size = mujoco.mj_stateSize(model, b)
        name = key.removeprefix("mjSTATE_").lower()
        out[name] = (offset, size)
        offset += size
    assert offset == mujoco.mj_stateSize(model, _SPEC)
    return out


class NativeSim:
    """The host side of one task's native physics: its model, pools of ``mujoco.batch``
    batches by size, and the callbacks that step them. Thread-safe.

    Args:
      model: the task's MuJoCo model (copied by every batch).
      frame_skip: ``mj_step`` calls per control step.
      derived: MjData fields returned after every control step (keys of
        :data:`DERIVED_FIELDS`).
      model_fields: names of model fields given per simulation at every call (e.g. a
        body position drawn per episode), with their shapes from ``model``.
      threads: MuJoCo threads per call (0: :func:`default_threads`).

    Attributes:
      trace: None (the default), or a list that every later call into MuJoCo's C
        library appends a :class:`NativeCall` to (copies of its inputs and its wall
        time): set it to ``[]`` to see what a jitted program asks of the physics, and
        back to None to stop. Tracing copies every call's state rows; leave it off
        outside profiling.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        frame_skip: int,
        derived: Sequence[str] = (),
        model_fields: Sequence[str] = (),
        threads: int = 0,
    ):
        unknown = sorted(set(derived) - set(DERIVED_FIELDS))
        if unknown:
            raise ValueError(
                f"derived fields {unknown} are not supported natively; allowed: "
                f"{', '.join(sorted(DERIVED_FIELDS))}"
            )
        self.model = model
        self.frame_skip = int(frame_skip)
        self.derived = tuple(derived)
        self.model_fields = tuple(model_fields)
        self.threads = int(threads)
        self.nstate = mujoco.mj_stateSize(model, _SPEC)
        self._slice = {k: slice(o, o + n) for k, (o, n) in _offsets(model).items()}
        d = mujoco.MjData(model)
        self._shapes = {name: getattr(d, name).shape for name in (*self.derived, *_INPUTS)}
        self._raw_shapes = dict(self._shapes)  # MjData's own (rotation matrices flat)
        for name in self.derived:
            if name.endswith("mat"):  # rotation matrices [n, 9] -> [n, 3, 3], as in MJX
                self._shapes[name] = (*self._shapes[name][:-1], 3, 3)
        self._shapes.update(time=(), qpos=(model.nq,), qvel=(model.nv,), act=(model.na,))
        # the views Batch.rollout records (as MjData's fields) when the rows are not needed:
        # not the time, which is summed here as MuJoCo sums it, nor an empty act; on the
        # small models each recorded item costs about 1 % of the rollout (measured on
        # pendulum, cart-pole and reacher: all four views 3-4 %, qpos and qvel 1-2 %)
        self._recorded: tuple[Any, ...] = ("qpos", "qvel") + (("act",) if model.na else ())
        self._raw_view_shapes: dict[Any, tuple[int, ...]] = {
            k: getattr(d, k).shape for k in self._recorded
        }
        # a timestep given per simulation: the time is recorded (its state component)
        self._time_recorded = any("timestep" in name for name in self.model_fields)
        if self._time_recorded:
            self._recorded += (mujoco.mjtState.mjSTATE_TIME,)
            self._raw_view_shapes[mujoco.mjtState.mjSTATE_TIME] = (1,)
        self._model_shapes = {name: getattr(model, name).shape for name in self.model_fields}
        self._lock = threading.Lock()
        self._free: dict[int, list[mj_batch.Batch]] = {}
        # per batch (by id; a batch is used by one call at a time, and lives as long as
        # this object): its recording buffers, by number of substeps
        self._records: dict[int, dict[int, dict[Any, np.ndarray]]] = {}
        self.trace: list[NativeCall] | None = None

    def _traced(self, b: mj_batch.Batch, kind: str, ids: Any, nstep: int, control: Any, stage: Any):
        """The record of the call about to run on ``b`` when tracing, else None."""
        if self.trace is None:
            return None
        return dict(
            kind=kind,
            rows=b.state.copy(),
            model_values={k: b.expand(k).copy() for k in self.model_fields},
            ids=None if ids is None else np.array(ids),
            nstep=nstep,
            control=None if control is None else np.array(control),
            stage=int(stage),
        )

    def _log(self, record: dict | None, seconds: float) -> None:
        if record is not None and self.trace is not None:
            self.trace.append(NativeCall(**record, seconds=seconds))

    # ------------------------------------------------------------------ batches
    def _acquire(self, n: int) -> mj_batch.Batch:
        with self._lock:
            free = self._free.get(n)
            if free:
                return free.pop()
        b = mj_batch.Batch(self.model, n, nthread=self.threads or default_threads())
        for name in self.derived:
            b.bind(name)  # registered once; refreshed after every call
        return b

    def _release(self, b: mj_batch.Batch) -> None:
        with self._lock:
            self._free.setdefault(b.nsim, []).append(b)

    @staticmethod
    def _set_input(row: np.ndarray, value: np.ndarray) -> None:
        """Writes the task's float32 inputs into the float64 rows where they changed: an
        input the task left alone keeps its exact float64 value."""
        if value.size:
            changed = value != row.astype(np.float32)
            row[changed] = value[changed]

    def _set_model_fields(self, b: mj_batch.Batch, values: Sequence[np.ndarray]) -> None:
        """Per-simulation model fields: the task's float32 values where they differ from
        the model's (e.g. a drawn door position), the model's exact float64 elsewhere."""
        for name, v in zip(self.model_fields, values, strict=True):
            base = getattr(self.model, name)
            v = v.reshape(b.nsim, *base.shape)
            full = np.broadcast_to(base, v.shape).copy()
            changed = v != base.astype(np.float32)
            full[changed] = v[changed]
            b.expand(name)[...] = full

    def _step_rows(self, b: mj_batch.Batch) -> tuple[np.ndarray, ...]:
        """One control step (``frame_skip`` substeps) of the batch's simulations from their
        state rows, the position and velocity stages computed at the new state where the
        task reads derived fields. Returns the state rows ``[n, nstate]`` and the derived
        fields ``[n, ...]``; diverged simulations have NaN qpos, qvel and derived fields."""
        n = b.nsim
        sq, sv = self._slice["qpos"], self._slice["qvel"]
        rows = b.state
        bad = ~(np.isfinite(rows[:, sq]).all(axis=1) & np.isfinite(rows[:, sv]).all(axis=1))
        ids = np.flatnonzero(~bad) if bad.any() else None
        stage = mujoco.mjtStage.mjSTAGE_VEL if self.derived else mujoco.mjtStage.mjSTAGE_NONE
        if ids is None or ids.size:
            counters = b.warning[:, _BAD[0] : _BAD[-1] + 1, 1]  # a view; counters only rise
            before = counters.sum(axis=1)
            record = self._traced(b, "step", ids, self.frame_skip, None, stage)
            t0 = time.perf_counter()
            try:
                b.step(ids, nstep=self.frame_skip, stage=stage)
            except mj_batch.SimulationError as e:
                bad[e.ids] = True  # those kept their state; the others ran
            self._log(record, time.perf_counter() - t0)
            bad |= counters.sum(axis=1) > before
        out_rows = rows.copy()
        derived = [b.bind(k).reshape(n, *self._shapes[k]).astype(np.float32) for k in self.derived]
        if bad.any():  # a diverged simulation stays diverged, as it does in MJX
            out_rows[bad, sq] = np.nan
            out_rows[bad, sv] = np.nan
            for x in derived:
                x[bad] = np.nan
        return (out_rows, *derived)

    def _rollout_recorded(
        self, b: mj_batch.Batch, ctrl: np.ndarray, resumable: bool = True
    ) -> tuple[np.ndarray, ...]:
        """h control steps with ``ctrl`` ``[n, h, nu]`` in ONE ``Batch.rollout`` call that
        records every substep. The derived fields at the state after control step t are the
        ones ``mj_step`` computes at the start of the next substep, so they cost nothing
        extra; one substep past the horizon is simulated for the last step's (its state is
        discarded).

        Returns the state rows ``[n, h, nstate]`` and the derived fields, or, when not
        ``resumable``, the views (time, qpos, qvel, act) in place of the rows: recorded as
        fields (on pendulum and cart-pole, one thread, the whole integration state at every
        substep cost 8-14 % over an unrecorded rollout, the views 3-7 %), and no state rows
        are copied out."""
        n, h = ctrl.shape[:2]
        fs = self.frame_skip
        sq, sv = self._slice["qpos"], self._slice["qvel"]
        rows = b.state
        start_time = rows[:, self._slice["time"]][:, 0].copy()  # before the call moves it
        bad = ~(np.isfinite(rows[:, sq]).all(axis=1) & np.isfinite(rows[:, sv]).all(axis=1))
        ids = np.flatnonzero(~bad) if bad.any() else None
        sel: Any = slice(None) if ids is None else ids
        control = np.repeat(ctrl[sel], fs, axis=1)  # each action held for frame_skip substeps
        if self.derived:
            control = np.concatenate([control, control[:, -1:]], axis=1)
        m, nstep = control.shape[:2]
        rec = self._record_buffers(b, m, nstep, resumable)
        if m:
            counters = b.warning[:, :, 1]
            before = counters.sum(axis=1)
            record = self._traced(b, "rollout", ids, nstep, control, mujoco.mjtStage.mjSTAGE_NONE)
            t0 = time.perf_counter()
            try:
                b.rollout(nstep, control, record=tuple(rec), ids=ids, out=rec)
            except mj_batch.SimulationError as e:
                bad[e.ids] = True  # those kept their state; the others ran to completion
            self._log(record, time.perf_counter() - t0)
            # a simulation whose warning counters rose stopped stepping (its records repeat
            # its last ones): diverged, or out of contact or constraint memory
            bad |= counters.sum(axis=1) > before
        out_derived = []
        for name in self.derived:
            out = np.full((n, h, *self._shapes[name]), np.nan, np.float32)
            out[sel] = rec[name][:, fs : h * fs + 1 : fs].reshape(m, h, *self._shapes[name])
            out_derived.append(out)
        if not resumable:
            views = []
            for name in _VIEWS:
                v = np.full((n, h, *self._shapes[name]), np.nan, np.float32)
                if name == "time" and self._time_recorded:
                    r = rec[mujoco.mjtState.mjSTATE_TIME][:, fs - 1 : h * fs : fs]
                elif name == "time":
                    r = self._substep_times(start_time[sel], nstep)[:, fs - 1 : h * fs : fs]
                elif name in rec:
                    r = rec[name][:, fs - 1 : h * fs : fs]
                else:  # a view of no numbers (act without actuator states)
                    r = np.empty((m, h, 0))
                v[sel] = r.reshape(m, h, *self._shapes[name])
                views.append(v)
            if bad.any():
                for x in (views[1], views[2], *out_derived):  # qpos, qvel, derived
                    x[bad] = np.nan
            return (*views, *out_derived)
        out_rows = np.full((n, h, self.nstate), np.nan)
        out_rows[sel] = rec[_SPEC][:, fs - 1 : h * fs : fs]
        if bad.any():  # a diverged simulation stays diverged, as it does in MJX
            out_rows[bad, :, sq] = np.nan
            out_rows[bad, :, sv] = np.nan
            for out in out_derived:
                out[bad] = np.nan
        return (out_rows, *out_derived)

    def _substep_times(self, t0: np.ndarray, nstep: int) -> np.ndarray:
        """``[m, nstep]``: the time after each of ``nstep`` substeps from ``t0`` ``[m]``,
        added one timestep at a time in float64 as ``mj_step`` does, so the same bits."""
        dt = np.full((t0.shape[0], nstep + 1), self.model.opt.timestep)
        dt[:, 0] = t0
        return np.cumsum(dt, axis=1)[:, 1:]

    def _record_buffers(
        self, b: mj_batch.Batch, m: int, nstep: int, resumable: bool = True
    ) -> dict[Any, np.ndarray]:
        """Arrays for ``Batch.rollout`` to record ``m`` simulations' ``nstep`` substeps into:
        the integration state rows (``resumable``) or the views as fields, and the derived
        fields. Those of a whole batch are kept and reused: freshly allocated, the records
        (on the door, 400 simulations x 151 substeps x 342 state numbers = 165 MB) are new
        pages that the kernel faults in on every call, which made the call 7-25 % slower
        (measured on the door)."""
        cache = self._records.setdefault(id(b), {}) if m == b.nsim else {}
        key = (nstep, resumable)
        if key not in cache:
            if resumable:
                rec = {_SPEC: np.empty((m, nstep, self.nstate))}
            else:
                rec = {k: np.empty((m, nstep, *self._raw_view_shapes[k])) for k in self._recorded}
            rec.update({k: np.empty((m, nstep, *self._raw_shapes[k])) for k in self.derived})
            cache[key] = rec
        return cache[key]

    def _pack(self, rows: np.ndarray, derived: Sequence[np.ndarray]) -> list[np.ndarray]:
        """State rows ``[..., nstate]`` -> the outputs: raw bits, views, derived."""
        out = [rows.view(np.uint32)]
        for name in _VIEWS:
            v = rows[..., self._slice[name]].astype(np.float32)
            out.append(v[..., 0] if name == "time" else v)
        return out + list(derived)

    # ---------------------------------------------------------------- callbacks
    def step(
        self,
        state: np.ndarray,
        ctrl: np.ndarray,
        mocap_pos: np.ndarray,
        mocap_quat: np.ndarray,
        *model_values: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        """Host callback of one control step: ``state`` uint32 ``[..., 2 * nstate]``, the
        inputs and the per-simulation model fields with the same leading dims. Returns
        ``(state, time, qpos, qvel, act, *derived)`` with those leading dims."""
        state, ctrl, mocap_pos, mocap_quat = _host(state, ctrl, mocap_pos, mocap_quat)
        model_values = _host(*model_values)
        lead = state.shape[:-1]
        n = math.prod(lead)
        b = self._acquire(n)
        try:
            b.state[...] = np.ascontiguousarray(state).view(np.float64).reshape(n, self.nstate)
            for name, v in zip(_INPUTS, (ctrl, mocap_pos, mocap_quat), strict=True):
                self._set_input(b.state[:, self._slice[name]], v.reshape(n, -1))
            self._set_model_fields(b, model_values)
            rows, *derived = self._step_rows(b)
        finally:
            self._release(b)
        out = self._pack(rows, derived)
        return tuple(x.reshape(lead + x.shape[1:]) for x in out)

    def rollout(
        self,
        state: np.ndarray,
        mocap_pos: np.ndarray,
        mocap_quat: np.ndarray,
        ctrl: np.ndarray,
        *model_values: np.ndarray,
        resumable: bool = True,
    ) -> tuple[np.ndarray, ...]:
        """Host callback of an open-loop rollout: ``ctrl`` ``[..., h, nu]`` applied in
        turn, one per control step, from ``state`` ``[..., 2 * nstate]``. Returns
        ``(state, time, qpos, qvel, act, *derived)``, each ``[..., h, ...]``: the states
        after every step; without ``state`` when not ``resumable``."""
        state, mocap_pos, mocap_quat, ctrl = _host(state, mocap_pos, mocap_quat, ctrl)
        model_values = _host(*model_values)
        lead = state.shape[:-1]
        n, h = math.prod(lead), ctrl.shape[-2]
        b = self._acquire(n)
        try:
            b.state[...] = np.ascontiguousarray(state).view(np.float64).reshape(n, self.nstate)
            for name, v in (("mocap_pos", mocap_pos), ("mocap_quat", mocap_quat)):
                self._set_input(b.state[:, self._slice[name]], v.reshape(n, -1))
            self._set_model_fields(b, model_values)
            out = self._rollout_recorded(b, ctrl.reshape(n, h, -1), resumable)
        finally:
            self._release(b)
        if resumable:
            out = self._pack(out[0], out[1:])
        return tuple(x.reshape(lead + x.shape[1:]) for x in out)

    def forward(
        self, qpos: np.ndarray, qvel: np.ndarray, *model_values: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Host callback of :meth:`make_data`: MuJoCo's default state (``mj_resetData``)
        at ``qpos``/``qvel`` with the position and velocity stages computed. Returns
        ``(state, time, qpos, qvel, act, ctrl, mocap_pos, mocap_quat, *derived)``."""
        qpos, qvel = _host(qpos, qvel)
        model_values = _host(*model_values)
        lead = qpos.shape[:-1]
        n = math.prod(lead)
        b = self._acquire(n)
        try:
            b.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
            b.state[:, self._slice["qpos"]] = qpos.reshape(n, -1)
            b.state[:, self._slice["qvel"]] = qvel.reshape(n, -1)
            self._set_model_fields(b, model_values)
            b.forward(stage=mujoco.mjtStage.mjSTAGE_VEL)
            rows = b.state.copy()
            derived = [
                b.bind(name).reshape(n, *self._shapes[name]).astype(np.float32)
                for name in self.derived
            ]
        finally:
            self._release(b)
        bad = ~(
            np.isfinite(rows[:, self._slice["qpos"]]).all(1)
            & np.isfinite(rows[:, self._slice["qvel"]]).all(1)
        )
        for x in derived:
            x[bad] = np.nan
        inputs = [
            rows[:, self._slice[name]].astype(np.float32).reshape(n, *self._shapes[name])
            for name in _INPUTS
        ]
        packed = self._pack(rows, derived)
        out = (*packed[:5], *inputs, *packed[5:])
        return tuple(x.reshape(lead + x.shape[1:]) for x in out)

    # -------------------------------------------------------------- JAX side
    def _structs(self, names: Sequence[str], lead: tuple[int, ...] = ()) -> list:
        return [jax.ShapeDtypeStruct((*lead, *self._shapes[k]), jnp.float32) for k in names]

    def _state_struct(self, lead: tuple[int, ...] = ()) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((*lead, 2 * self.nstate), jnp.uint32)

    def _views(self, outs: Sequence[jax.Array]) -> dict[str, jax.Array]:
        return dict(zip((*_VIEWS, *self.derived), outs, strict=True))

    def jax_step(self, data: NativeData, model_values: Sequence[jax.Array]) -> NativeData:
        """One control step of ``data`` (traceable; batch it with ``jax.vmap``)."""
        shapes = [self._state_struct(), *self._structs((*_VIEWS, *self.derived))]
        args = (data.state, data.ctrl, data.mocap_pos, data.mocap_quat, *model_values)
        outs = _host_call(self.step, shapes, args)
        return data.replace(state=outs[0], views=self._views(outs[1:]))

    def jax_rollout(
        self,
        data: NativeData,
        ctrl: jax.Array,
        model_values: Sequence[jax.Array],
        resumable: bool = True,
    ) -> NativeData:
        """The states after each row of ``ctrl`` ``[h, nu]`` applied from ``data``, one host
        call for all h steps (traceable; batch it with ``jax.vmap``). Returns a
        :class:`NativeData` whose leaves have a leading axis h.

        ``resumable=False``: the states carry their views and derived fields (what
        observations and costs read) but not MuJoCo's exact state; their ``state`` is NaN,
        so stepping from one gives a diverged (non-finite) simulation. Cheaper: see
        :meth:`_rollout_recorded`."""
        h = ctrl.shape[0]
        views = self._structs((*_VIEWS, *self.derived), (h,))
        args = (data.state, data.mocap_pos, data.mocap_quat, ctrl, *model_values)
        if resumable:
            outs = _host_call(self.rollout, [self._state_struct((h,)), *views], args)
        else:
            fn = functools.partial(self.rollout, resumable=False)
            outs = [jnp.broadcast_to(_NAN_STATE, (h, self.nstate, 2)).reshape(h, -1)]
            outs += _host_call(fn, views, args)
        return NativeData(
            state=outs[0],
            ctrl=ctrl.astype(jnp.float32),
            mocap_pos=jnp.broadcast_to(data.mocap_pos, (h, *data.mocap_pos.shape)),
            mocap_quat=jnp.broadcast_to(data.mocap_quat, (h, *data.mocap_quat.shape)),
            views=self._views(outs[1:]),
        )

    def jax_forward(
        self, qpos: jax.Array, qvel: jax.Array, model_values: Sequence[jax.Array]
    ) -> NativeData:
        """The state at ``qpos``/``qvel`` (traceable), with derived fields computed."""
        views = self._structs(_VIEWS)
        shapes = [
            self._state_struct(),
            *views,
            *self._structs(_INPUTS),
            *self._structs(self.derived),
        ]
        args = (jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32), *model_values)
        outs = _host_call(self.forward, shapes, args)
        ctrl, mocap_pos, mocap_quat = outs[5:8]
        return NativeData(
            state=outs[0],
            ctrl=ctrl,
            mocap_pos=mocap_pos,
            mocap_quat=mocap_quat,
            views=self._views((*outs[1:5], *outs[8:])),
        )


def _host(*arrays: Any) -> list[np.ndarray]:
    """Callback arguments as NumPy arrays (JAX may pass its own arrays, whose every
    indexing would dispatch a JAX operation)."""
    return [np.asarray(a) for a in arrays]


# XLA's CPU client copies a callback operand above 100 KiB into a JAX array on its own
# thread pool; when every pool thread is inside a callback waiting for such a copy (two
# host devices on two cores), the program deadlocks. Operands are therefore handed over in
# pieces below this size, which XLA copies on the calling thread.
_CHUNK_BYTES = 64 * 1024


def _host_call(fn: Any, shapes: Sequence[jax.ShapeDtypeStruct], args: Sequence[Any]) -> list:
    """``fn`` on the host for the whole batch at once, with a clear error instead of a
    derivative.

    ``fn`` takes arrays with any common leading (batch) dims in front of the per-simulation
    shapes of ``args`` and returns arrays with the same leading dims in front of ``shapes``.
    Under ``jax.vmap`` (of any depth) the batch dims are stacked in front, unbatched
    arguments broadcast, and ONE host call receives them all, its operands split along the
    batch into pieces of at most ``_CHUNK_BYTES`` (see above).
    """
    cores = [tuple(jnp.shape(a)) for a in args]

    @jax.custom_batching.custom_vmap
    def call(*a):
        return _chunked_callback(fn, cores, shapes, a)

    @call.def_vmap
    def _batched(axis_size, in_batched, *a):
        a = [
            x if batched else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))
            for x, batched in zip(a, in_batched, strict=True)
        ]
        out = call(*a)  # one more leading dim; an enclosing vmap batches this call again
        return out, tuple(True for _ in out)

    @jax.custom_jvp
    def differentiable_guard(*a):
        return call(*a)

    @differentiable_guard.defjvp
    def _no_derivative(primals, tangents):
        raise NotDifferentiableError(
            "native MuJoCo physics is not differentiable (it runs in MuJoCo's C library "
            "through a host callback); build the task with backend='mjx' to differentiate "
            "through the simulator"
        )

    return list(differentiable_guard(*args))


def _packable(dtype: Any) -> bool:
    """Whether arrays of ``dtype`` travel as uint32 words (4-byte numbers)."""
    return np.dtype(dtype).itemsize == 4


def _chunked_callback(
    fn: Any,
    cores: Sequence[tuple[int, ...]],
    shapes: Sequence[jax.ShapeDtypeStruct],
    args: Sequence[jax.Array],
) -> tuple[jax.Array, ...]:
    """One ``jax.pure_callback`` of ``fn`` on ``args`` (all with the same leading dims in
    front of ``cores``).

    The 4-byte operands travel as ONE uint32 matrix, a row per simulation (their words side
    by side), and the 4-byte results come back the same way: JAX hands every callback
    operand to the host through its own ``device_put`` and every result through its own
    conversion, about 35 us each on a 2-core CPU, which on the small models' plans was
    a few percent of the time. Operands are cut along the rows into pieces of at most
    ``_CHUNK_BYTES`` (see above); the host side joins them again."""
    args = [jnp.asarray(a) for a in args]
    lead = tuple(args[0].shape[: args[0].ndim - len(cores[0])])
    n = math.prod(lead)
    flat = [a.reshape(n, math.prod(core)) for a, core in zip(args, cores, strict=True)]
    words = [x for x in flat if _packable(x.dtype)]
    packed = (
        jnp.concatenate([jax.lax.bitcast_convert_type(x, jnp.uint32) for x in words], axis=1)
        if words
        else None
    )
    operands = ([packed] if packed is not None else []) + [
        x for x in flat if not _packable(x.dtype)
    ]
    pieces: list[jax.Array] = []
    counts: list[int] = []
    for x in operands:
        row = max(1, x.shape[1] * x.dtype.itemsize)
        per = max(1, _CHUNK_BYTES // row)
        parts = [x[i : i + per] for i in range(0, n, per)] or [x]
        pieces += parts
        counts.append(len(parts))

    out_cols = sum(math.prod(s.shape) for s in shapes if _packable(s.dtype))
    packs_results = any(_packable(s.dtype) for s in shapes)

    def host(*flat_pieces: Any) -> tuple[np.ndarray, ...]:
        joined, i = [], 0
        for c in counts:
            part = [np.asarray(x) for x in flat_pieces[i : i + c]]
            i += c
            joined.append(part[0] if c == 1 else np.concatenate(part))
        rest = iter(joined[1:] if packed is not None else joined)
        inputs, col = [], 0
        for a, core in zip(args, cores, strict=True):
            if _packable(a.dtype):
                width = math.prod(core)
                x = np.ascontiguousarray(joined[0][:, col : col + width]).view(a.dtype)
                col += width
            else:
                x = next(rest)
            inputs.append(x.reshape(*lead, *core))
        results = fn(*inputs)
        out_words = [
            np.ascontiguousarray(r, s.dtype).reshape(n, math.prod(s.shape)).view(np.uint32)
            for r, s in zip(results, shapes, strict=True)
            if _packable(s.dtype)
        ]
        others = [r for r, s in zip(results, shapes, strict=True) if not _packable(s.dtype)]
        if out_words:
            return (np.concatenate(out_words, axis=1), *others)
        return tuple(others)

    out_shapes = [jax.ShapeDtypeStruct((*lead, *s.shape), s.dtype) for s in shapes]
    callback_shapes = [s for s in out_shapes if not _packable(s.dtype)]
    if packs_results:
        callback_shapes.insert(0, jax.ShapeDtypeStruct((n, out_cols), np.uint32))
    # no vmap_method: vmaps are handled by the custom_vmap above, never by the callback
    got = iter(jax.pure_callback(host, callback_shapes, *pieces))
    matrix = next(got) if packs_results else None
    outs, col = [], 0
    for s in out_shapes:
        if _packable(s.dtype):
            width = math.prod(s.shape[len(lead) :])
            x = jax.lax.bitcast_convert_type(matrix[:, col : col + width], s.dtype)
            col += width
            outs.append(x.reshape(s.shape))
        else:
            outs.append(next(got))
    return tuple(outs)

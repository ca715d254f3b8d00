"""Run an exported cart-pole policy in a plain MuJoCo loop, with NumPy and mujoco only.

This is what a robot computer runs: no JAX, no apexjax import. ``policy.npz`` is what
``apexjax export RUN_DIR`` writes (:mod:`apexjax.export`, format version 1: the MLP's
weights, the observation normaliser and the action bounds, as plain arrays).

The exported file holds the network, not the task: the observation and the cost are the
task's, written here in NumPy the way ``apexjax/envs/tasks/cartpole.py`` writes them in JAX
(``[x, cos theta, sin theta, x_dot, theta_dot]`` from ``qpos``/``qvel``). Another task needs
its own observation here. With apexjax installed, ``apexjax.export.load_numpy_policy``
evaluates the same network (also without JAX); it is written out below so that this file
runs on its own.

    python examples/run_policy_numpy.py runs/train-cartpole_swingup-DATE/policy.npz

prints the episode's return (minus the summed cost, as apexjax reports returns) and
whether the pole ended up upright. ``--save FILE.npz`` writes the trajectory (qpos, qvel,
observations, actions, costs) for a comparison with the JAX policy.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import time

import mujoco
import numpy as np


class Policy:
    """The exported MLP: normalise and clip the observation, hidden layers with the
    exported activation, tanh output scaled to the action bounds; float32 throughout."""

    def __init__(self, path: str | pathlib.Path):
        with np.load(path, allow_pickle=False) as f:
            if int(f["format_version"]) != 1:
                raise ValueError(f"{path}: format_version {int(f['format_version'])}, expected 1")
            n = int(f["num_layers"])
            self.weights = [f[f"W{i}"].astype(np.float32) for i in range(n)]
            self.biases = [f[f"b{i}"].astype(np.float32) for i in range(n)]
            self.mean = f["obs_mean"].astype(np.float32)
            self.std = f["obs_std"].astype(np.float32)
            self.clip = np.float32(f["obs_clip"])
            self.low = f["action_low"].astype(np.float32)
            self.high = f["action_high"].astype(np.float32)
            self.activation = str(f["activation"])

    def _hidden(self, x: np.ndarray) -> np.ndarray:
        if self.activation == "silu":
            return x * (np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * x)))
        return np.maximum(x, np.float32(0.0))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.clip((np.asarray(obs, np.float32) - self.mean) / self.std, -self.clip, self.clip)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            x = np.tanh(x) if i == len(self.weights) - 1 else self._hidden(x)
        half = (self.high - self.low) / np.float32(2.0)
        mid = (self.high + self.low) / np.float32(2.0)
        return (mid + x * half).astype(np.float32)


# ---------------------------------------------- the cart-pole task (cartpole.py, in NumPy)
RAIL = 2.0  # half-length of the rail, m


def observation(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """``[x, cos theta, sin theta, x_dot, theta_dot]`` (float32, as the task's JAX code
    computes it from the simulator's float32 state)."""
    q, v = np.asarray(qpos, np.float32), np.asarray(qvel, np.float32)
    return np.array([q[0], np.cos(q[1]), np.sin(q[1]), v[0], v[1]], np.float32)


def cost(qpos: np.ndarray, action: np.ndarray, action_cost: float) -> float:
    """The task's cost of a step, at the state after it (lower is better)."""
    x, theta = float(qpos[0]), float(qpos[1])
    return (
        0.8 * (1.0 - np.cos(theta)) / 2.0
        + 0.2 * (x / RAIL) ** 2
        + action_cost * float(np.sum(np.square(action)))
    )


def default_model() -> pathlib.Path | None:
    """apexjax's cart-pole MJCF, located without importing apexjax (None if not installed)."""
    spec = importlib.util.find_spec("apexjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "envs/assets/cartpole.xml"
    return path if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("policy", type=pathlib.Path, help="an exported policy.npz")
    p.add_argument(
        "--model", type=pathlib.Path, default=None, help="default: apexjax's cartpole.xml"
    )
    p.add_argument("--steps", type=int, default=200, help="control steps (the task's 200 = 10 s)")
    p.add_argument("--frame-skip", type=int, default=5, help="physics steps per control step")
    p.add_argument("--action-cost", type=float, default=0.01)
    p.add_argument("--init-noise", type=float, default=0.05, help="start-state noise half-width")
    p.add_argument("--success-deg", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", type=pathlib.Path, default=None, help="write the trajectory (.npz)")
    args = p.parse_args(argv)

    model_path = args.model or default_model()
    if model_path is None:
        p.error("--model: apexjax is not installed here; give the path of cartpole.xml")
    model = mujoco.MjModel.from_xml_path(str(model_path))
    data = mujoco.MjData(model)
    pi = Policy(args.policy)

    # the task's start distribution: hanging down at rest, plus uniform noise
    rng = np.random.default_rng(args.seed)
    n = args.init_noise
    data.qpos[:] = np.array([0.0, np.pi]) + rng.uniform(-n, n, 2)
    data.qvel[:] = rng.uniform(-n, n, 2)
    mujoco.mj_forward(model, data)

    log = {k: [] for k in ("qpos", "qvel", "obs", "actions", "costs")}
    t0 = time.perf_counter()
    for _ in range(args.steps):
        obs = observation(data.qpos, data.qvel)
        action = np.clip(pi(obs), pi.low, pi.high)
        log["qpos"].append(data.qpos.copy())
        log["qvel"].append(data.qvel.copy())
        data.ctrl[:] = action
        for _ in range(args.frame_skip):
            mujoco.mj_step(model, data)
        log["obs"].append(obs)
        log["actions"].append(action)
        log["costs"].append(cost(data.qpos, action, args.action_cost))
    seconds = time.perf_counter() - t0

    ret = -float(np.sum(log["costs"]))
    upright = np.cos(data.qpos[1]) > np.cos(np.deg2rad(args.success_deg))
    print(f"return {ret:.3f} over {args.steps} steps; pole upright at the end: {bool(upright)}")
    print(f"{seconds / args.steps * 1e6:.0f} us per control step (policy + physics)")
    print(f"jax imported: {'jax' in sys.modules}")
    if args.save is not None:
        np.savez(args.save, **{k: np.asarray(v) for k, v in log.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

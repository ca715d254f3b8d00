"""The scripts in examples/ run (tiny budgets through their own flags): the NumPy policy
loop without JAX, acting as the JAX policy does on the same states, and the planner in a
jitted MPC loop of one's own."""

import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from apexjax import envs, policy
from apexjax.export import export_policy

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(args, **kw):
    out = subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, **kw
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_numpy_policy_loop_acts_as_the_jax_policy(tmp_path):
    task = envs.make("cartpole_swingup", backend="native")
    cfg = policy.PolicyConfig(hidden=(32, 32), output_scale=1.0)
    pol = policy.init(cfg, jax.random.PRNGKey(0), task.observation_dim, *task.action_bounds)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, task.observation_dim)) * 3.0
    pol = policy.update_normalizer(pol, obs)  # a normaliser that is not the identity
    path = export_policy(tmp_path / "policy.npz", pol, cfg)

    # JAX is not importable in the example's process: a stand-in package that fails
    blocker = tmp_path / "nojax" / "jax"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the example must not import jax')")
    traj = tmp_path / "traj.npz"
    out = _run(
        [EXAMPLES / "run_policy_numpy.py", path, "--steps", "40", "--save", traj],
        env={"PYTHONPATH": str(blocker.parent), "PATH": "/usr/bin:/bin"},
    )
    assert "jax imported: False" in out
    ret = float(re.search(r"return (-?[\d.]+)", out).group(1))
    t = np.load(traj)
    assert np.isclose(ret, -t["costs"].sum(), atol=1e-3) and np.isfinite(ret)
    assert t["actions"].shape == (40, task.action_dim) and np.ptp(t["actions"]) > 0.01

    # on the same states: the task's own observation, and the JAX policy's actions
    data = jax.vmap(task.make_data)(jnp.asarray(t["qpos"]), jnp.asarray(t["qvel"]))
    jax_obs = jax.vmap(lambda d: task.observation(envs.State(data=d, t=jnp.int32(0))))(data)
    np.testing.assert_allclose(t["obs"], np.asarray(jax_obs), rtol=1e-6, atol=1e-6)
    jax_actions = np.asarray(policy.act(cfg, pol, jnp.asarray(t["obs"])))
    np.testing.assert_allclose(t["actions"], jax_actions, rtol=1e-5, atol=1e-5)


def test_plan_from_jax():
    budget = ["--population", "8", "--elites", "2", "--horizon", "5", "--iterations", "1"]
    out = _run([EXAMPLES / "plan_from_jax.py", "--backend", "native", "--steps", "10", *budget])
    ret = float(re.search(r"return (-?[\d.]+) over 10 steps", out).group(1))
    assert np.isfinite(ret)

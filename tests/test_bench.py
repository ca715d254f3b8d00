"""``apexjax bench``: argument errors, the Markdown report, and the cheap pieces of the
sections (the sections themselves are measured by the command, not in tests)."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax import envs, policy
from apexjax.bench import Figure, Section, figure_dict, to_markdown
from apexjax.bench.learning import _crossing, to_brax
from apexjax.cli import main


def test_markdown_table():
    s = Section(
        "Latency",
        [
            Figure("policy", 0.05, "ms", 40.0, "planner", 800.0, note="1 env"),
            Figure("compile", 12.5, "s"),
        ],
    )
    md = to_markdown([s], "header")
    assert md.startswith("header") and "### Latency" in md
    assert "| policy | 0.05 | planner | 40.0 | 800× | ms | 1 env |" in md
    assert "| compile | 12.5 |  |  |  | s |  |" in md
    assert json.loads(json.dumps(figure_dict(s.figures[0])))["ratio"] == 800.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sections", "planner,nope"], "--sections: unknown ['nope']"),
        (["--devices", "1,x"], "--devices"),
        (["--devices", "0"], "--devices: every count must be >= 1"),
        (["--seeds", "0"], "--seeds"),
        (["--task", "no_such_task"], "no_such_task"),
    ],
)
def test_bad_arguments_are_one_clear_error(argv, message, capsys, tmp_path):
    assert main(["bench", "--out", str(tmp_path / "b.json"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "b.json").exists()


def test_report_renders_saved_json_and_rejects_corrupt(tmp_path, capsys):
    s = Section("Planner", [Figure("time per control step", 3.0, "ms", 30.0, "NumPy", 10.0)])
    saved = {
        "command": "apexjax bench",
        "date": "2026-01-01",
        "environment": {"hardware": "test CPU", "versions": {"jax": "0", "mujoco": "0"}},
        "sections": [{"title": s.title, "figures": [figure_dict(f) for f in s.figures]}],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(saved))
    md = tmp_path / "bench.md"
    assert main(["bench", "--report", str(path), "--md", str(md)]) == 0
    assert "| time per control step | 3.00 | NumPy | 30.0 | 10.0× | ms |" in md.read_text()
    assert "test CPU" in md.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    capsys.readouterr()
    assert main(["bench", "--report", str(bad)]) == 2
    assert "not a bench JSON" in capsys.readouterr().err


def test_numpy_policy_latency_child_runs_without_jax(tmp_path):
    from apexjax.bench.policy import _numpy_latency
    from apexjax.export import export_policy

    config = policy.PolicyConfig(hidden=(16,))
    state = policy.init(config, jax.random.key(0), 3, np.array([-1.0]), np.array([1.0]))
    npz = tmp_path / "p.npz"
    export_policy(npz, state, config)
    r = _numpy_latency(str(npz), 3, repeats=20)
    assert np.isfinite(r["median_ms"]) and np.isfinite(r["iqr_ms"])  # measured, not judged
    assert r["jax_imported"] is False


def test_brax_wrapper_is_the_task():
    """PPO sees the same dynamics and the negated cost, with [-1, 1] actions mapped to the
    task's bounds."""
    task = envs.make("point_mass")  # pure JAX: the wrapper is what is tested, not physics
    env = to_brax(task)
    assert env.observation_size == task.observation_dim and env.action_size == task.action_dim
    _, high = task.action_bounds
    s = jax.jit(env.reset)(jax.random.key(0))
    s2 = jax.jit(env.step)(s, jnp.ones(task.action_dim))  # +1 is the upper bound

    @jax.jit
    def reference(state, a):
        nxt = task.step(state, a)
        return task.observation(nxt), -task.cost(state, a, nxt)

    obs, expected = reference(s.pipeline_state, jnp.asarray(high, jnp.float32))
    np.testing.assert_allclose(s2.obs, obs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s2.reward, expected, rtol=1e-5, atol=1e-6)
    assert float(s2.done) == 0.0


def test_threshold_crossing():
    curve = [(10.0, 100.0, -90.0), (20.0, 200.0, -45.0), (30.0, 300.0, -30.0)]
    assert _crossing(curve, -50.0) == {"reached": True, "seconds": 20.0, "simulated_steps": 200.0}
    assert _crossing(curve, -10.0)["reached"] is False


def test_learning_figures_bound_seeds_that_never_reach():
    from apexjax.bench.learning import figures

    def seed(i, curve, threshold=-50.0):
        return {"seed": i, "curve": curve, **_crossing(curve, threshold)}

    details = {
        "threshold": -50.0,
        "apex": {"per_seed": [seed(0, [(100.0, 1e6, -40.0)]), seed(1, [(300.0, 3e6, -45.0)])]},
        "ppo": {"per_seed": [seed(0, [(400.0, 4e6, -30.0)]), seed(1, [(800.0, 8e6, -60.0)])]},
    }
    wall, steps = figures(details)
    assert wall.value == 200.0 and wall.baseline == 600.0 and wall.ratio == 3.0
    assert "lower bound" in wall.note and "seed 1 not reached" in wall.note
    assert steps.value == 2e6 and steps.baseline == 6e6


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

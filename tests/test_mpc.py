"""Closed-loop MPC: iCEM solves the swing-ups natively and beats plain CEM at equal budget
(pendulum), solves the pendulum on MJX too (the suite's MPC episodes on MJX physics), and
solves point_mass; the CLI."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from apexjax import cli, envs
from apexjax.planning import icem
from apexjax.planning.mpc import run_mpc

# ~760 simulated control steps per control step (16+2 shifted, 12, 9 sequences x 20), and
# plain CEM at the same budget (3 x 13 x 20 = 780): a low budget, where iCEM's smooth
# noise and memory matter most, and cheap enough for CPU tests.
ICEM = icem.ICEMConfig(population=16, elites=4, horizon=20)
CEM = icem.cem_config(population=13, elites=4, decay=1.0, horizon=20)


def test_budgets_are_equal():
    a, b = icem.simulated_per_step(ICEM), icem.simulated_per_step(CEM)
    assert abs(a - b) <= 0.05 * b


@pytest.mark.slow
def test_pendulum_swingup_solved_and_icem_beats_cem():
    # 100 steps of 0.05 s; cost (1 + cos q)/2 is 1 hanging, 0 upright, so hanging still
    # scores -100. The torque limit needs a few swings (~1.5 s = 30 steps at cost ~0.5
    # on average), so -45 means the pole was brought up within ~2 s and held there.
    task = envs.make("pendulum_swingup", backend="native")
    r_icem = run_mpc(dataclasses.replace(ICEM, beta=2.0), task, jax.random.key(0), 2)
    r_cem = run_mpc(CEM, task, jax.random.key(0), 2)
    assert np.all(r_icem["success"]), r_icem["returns"]
    assert np.all(r_icem["returns"] > -45.0), r_icem["returns"]
    assert r_icem["returns"].mean() > r_cem["returns"].mean(), (
        r_icem["returns"],
        r_cem["returns"],
    )
    assert r_icem["actions"].shape == (2, 100, 1)
    assert np.all(np.abs(r_icem["actions"]) <= 1.0)
    assert r_icem["nonfinite_steps"].sum() == 0


@pytest.mark.slow
def test_pendulum_swingup_solved_on_mjx():
    # the same iCEM episode on MJX physics: solved as natively (the two physics agree to
    # float32 round-off on this contact-free model, tests/test_fidelity.py)
    task = envs.make("pendulum_swingup", backend="mjx")
    r = run_mpc(dataclasses.replace(ICEM, beta=2.0), task, jax.random.key(0), 1)
    assert np.all(r["success"]), r["returns"]
    assert np.all(r["returns"] > -45.0), r["returns"]
    assert r["nonfinite_steps"].sum() == 0


@pytest.mark.slow
def test_cartpole_swingup_solved():
    # 100 steps (5 s). Hanging costs 0.8 per step (-80 per episode); swinging up takes
    # ~1.5-2 s, after which balancing near the centre costs ~0, so a solved episode
    # scores about -20 to -30: -40 (half the hanging score) needs the pole up for most
    # of the episode, and success needs it upright at the end.
    task = envs.make("cartpole_swingup", episode_length=100)
    r = run_mpc(dataclasses.replace(ICEM, beta=0.25), task, jax.random.key(0), 2)
    assert np.all(r["success"]), r["returns"]
    assert np.all(r["returns"] > -40.0), r["returns"]


# point_mass (pure JAX): standing still scores -(start distance) x 50 steps, -10 to -25;
# reaching a goal 0.2-0.5 m away takes about 1-1.5 s at full force, so a solved episode
# scores about -1.5 to -3.5 (measured -1.4 to -3.1 over these 8 episodes).
PM_ICEM = icem.ICEMConfig(population=16, elites=4, horizon=5)


@pytest.fixture(scope="module")
def point_mass_run():
    """8 point_mass episodes in 2 chunks of 25 steps (the CLI test repeats this program)."""
    return run_mpc(PM_ICEM, envs.make("point_mass"), jax.random.key(0), 8, chunk_size=25)


def test_point_mass_solved(point_mass_run):
    r = point_mass_run
    assert np.all(r["success"]), r["returns"]
    assert np.all(r["returns"] > -4.0), r["returns"]
    assert r["actions"].shape == (8, 50, 2) and np.all(np.abs(r["actions"]) <= 1.0)
    assert r["nonfinite_steps"].sum() == 0


def test_cli_plan_writes_json(tmp_path, capsys, point_mass_run):
    out = tmp_path / "r.json"
    argv = ["plan", "--task", "point_mass", "--episodes", "8", "--chunk", "25", "--out", str(out)]
    argv += ["--set", "population=16", "--set", "elites=4", "--set", "horizon=5"]
    assert cli.main(argv) == 0
    text = capsys.readouterr()
    assert "return" in text.out and "ms per control step" in text.out
    assert "step 25/50" in text.err and "step 50/50" in text.err
    r = json.loads(out.read_text())
    assert r["config"]["population"] == 16
    assert np.asarray(r["actions"]).shape == (8, 50, 2)
    # the same seed and config as run_mpc above: the same episodes
    np.testing.assert_array_equal(r["success"], point_mass_run["success"])
    np.testing.assert_allclose(r["returns"], point_mass_run["returns"], rtol=1e-6)
    # a bad override is a one-line error before anything compiles
    assert cli.main(["plan", "--task", "point_mass", "--set", "elites=30"]) == 2
    assert "ICEMConfig.elites" in capsys.readouterr().err

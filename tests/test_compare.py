"""``apexjax compare``: the planner alone, the policy alone and the policy with a small
planner on the same start states, on a tiny cart-pole run (native physics)."""

import argparse
import dataclasses
import json
import math

import pytest
from _tiny import TINY_CARTPOLE

from apexjax import compare
from apexjax.cli import main
from apexjax.commands import compare as compare_cmd
from apexjax.configs import ConfigError
from apexjax.planning.icem import ICEMConfig, simulated_per_step

# the run compare reads: cart-pole on native physics, guidance as configured by default
TINY = TINY_CARTPOLE


@pytest.fixture(scope="module")
def run(tiny_cartpole_run):
    return tiny_cartpole_run


def _args(argv):
    p = argparse.ArgumentParser()
    compare_cmd.add_parser(p)
    return p.parse_args(argv)


def test_small_planner_sizes():
    paper = ICEMConfig(population=40, elites=10, horizon=30)
    small = compare.small_planner(paper, 0.1)
    assert (small.population, small.elites, small.horizon) == (4, 2, 30)
    assert simulated_per_step(small) < 0.15 * simulated_per_step(paper)
    big = compare.small_planner(ICEMConfig(population=300, elites=30), 0.1)
    assert (big.population, big.elites) == (30, 3)
    assert compare.small_planner(paper, 1.0) == dataclasses.replace(paper, num_extra_candidates=0)
    for bad in (0, -0.1, 1.5, math.nan, True):
        with pytest.raises(ConfigError, match="small_fraction"):
            compare.small_planner(paper, bad)


def test_compare_command(run, tmp_path, capsys):
    assert main(["compare", str(run), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        "| planner alone" in out and "| policy alone" in out and "| policy + small planner" in out
    )
    got = json.loads((run / "compare.json").read_text())
    assert got["task"] == "cartpole_swingup" and got["backend"] == "native"
    assert (
        got["command"].startswith("apexjax compare ") and "--small-fraction 0.1" in got["command"]
    )
    assert got["environment"]["versions"]["jax"] and got["environment"]["hardware"]
    assert "PPO" in got["ppo"]
    c = got["controllers"]
    assert list(c) == ["planner", "policy", "policy_small_planner"]
    for name, r in c.items():
        assert r["episodes"] == 2 and len(r["returns"]) == 2, name
        assert all(math.isfinite(x) for x in r["returns"]), name
        assert len(r["successes"]) == 2 and 0 <= r["success_rate"] <= 1, name
        assert r["wall_s_per_control_step"] > 0 and r["compile_s"] > 0, name
    # the same start states for every controller
    assert got["same_start_states"]
    assert len({r["start_states_sha1"] for r in c.values()}) == 1
    assert c["planner"]["first_start_qpos"] == c["policy"]["first_start_qpos"]
    # the planner alone is unguided; the small planner is smaller, guided, with the policy
    p, s = c["planner"]["planner"], c["policy_small_planner"]["planner"]
    assert p["population"] == 8 and p["policy_candidates"] == 0 and p["guidance_weight"] == 0
    assert s["population"] < p["population"] and s["policy_candidates"] == 1
    assert s["guidance_mode"] == TINY.guidance.mode
    steps = {k: r["simulated_steps_per_control_step"] for k, r in c.items()}
    assert steps["policy"] == 1 < steps["policy_small_planner"] < steps["planner"]
    assert c["policy"]["timed_program_matches"]

    # an explicit --out is never replaced silently; a bad option is one message naming it
    dst = tmp_path / "c.json"
    dst.write_text("keep me")
    assert main(["compare", str(run), "--out", str(dst)]) == 2
    assert "--force" in capsys.readouterr().err and dst.read_text() == "keep me"
    for argv, option in (
        (["--small-fraction", "0"], "--small-fraction"),
        (["--small-fraction", "2"], "--small-fraction"),
        (["--episodes", "0"], "--episodes"),
        (["--checkpoint", "first"], "--checkpoint"),
        (["--out", str(tmp_path)], "--out"),
    ):
        with pytest.raises(ConfigError, match=option):
            compare_cmd.check_args(_args([str(run), *argv]))
        assert main(["compare", str(run), *argv]) == 2
        assert option in capsys.readouterr().err

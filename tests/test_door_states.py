"""experiments/door_states.py: a door policy's reach and its dataset's phases."""

import json
import pathlib
import sys

import numpy as np
import pytest
from _tiny import tiny_config

from apexjax.guidance import GuidanceConfig
from apexjax.train import load_checkpoint, train

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ are scripts beside the package

from experiments import door_states  # noqa: E402


@pytest.fixture(scope="module")
def door_run(tmp_path_factory):
    """One tiny iteration of the door on native physics, guided at a fixed weight."""
    run = tmp_path_factory.mktemp("door") / "run"
    config = tiny_config(
        "door",
        episode_length=8,
        backend="native",
        guidance=GuidanceConfig("fixed", 1.0),
    )
    train(config, run)
    return run


def test_door_states_reads_episodes_and_dataset_phases(door_run, tmp_path):
    out = tmp_path / "door.json"
    args = [
        str(door_run),
        "--checkpoints",
        "1",
        "--episodes",
        "2",
        "--episode-length",
        "10",
        "--open",
        "-1",
        "--latch",
        "-10",
        "--out",
        str(out),
    ]
    assert door_states.main(args) == 0
    r = json.loads(out.read_text())
    (c,) = r["checkpoints"]
    assert c["iteration"] == 1 and len(c["episodes"]["return"]) == 2
    assert c["episode_length"] == 10  # not the run's 8
    assert set(c["distance_mean_at"]) == {"0", "10"}  # steps past the episode are left out
    for key in ("distance_min", "latch_max", "hinge_max"):
        assert len(c["episodes"][key]) == 2 and np.isfinite(c["episodes"][key]).all()
    # the counts are the episodes past each threshold: below any angle, every episode counts
    assert r["latch"] == -10 and c["latch_turned"] == 2 and c["door_opened"] == 2
    assert c["distance_min_median"] == pytest.approx(np.median(c["episodes"]["distance_min"]))
    cfg, state = load_checkpoint(door_run)
    g = c["dataset"]
    # every hinge angle lies above -1 rad: with --open -1 every row counts as open
    assert g["expert_shut"]["rows"] == g["dagger_shut"]["rows"] == 0
    assert g["expert_open"]["rows"] + g["dagger_open"]["rows"] == int(state.dataset.size)
    assert g["expert_shut"]["policy_loss"] is None and g["expert_open"]["policy_loss"] >= 0
    # below any angle, every expert episode is latched and open from its first row
    assert [(e["latch_step"], e["open_step"], e["steps"]) for e in c["expert_episodes"]] == [
        (0, 0, 8)
    ] * cfg.num_envs
    assert c["expert_pull_steps"] == [0] * cfg.num_envs
    assert r["command"].startswith("python experiments/door_states.py ")


def test_expert_phases_reads_episodes_in_the_order_they_are_stored():
    from types import SimpleNamespace

    from apexjax import aggregator

    rows = np.zeros((2 * 2 * 6, 39))  # 2 iterations x 2 episodes x 6 steps
    rows[3:6, door_states.LATCH] = 1.0  # episode 0: latched at step 3, opened at step 5
    rows[5:6, door_states.HINGE] = 1.0
    rows[6 + 1 :, door_states.LATCH] = 1.0  # episode 1 latched at 1, never opened ...
    rows[12:18, door_states.HINGE] = 1.0  # ... episode 2 open from step 0, latched at 0
    source = np.full(24, aggregator.SOURCE_EXPERT)
    source[19:] = aggregator.SOURCE_POLICY  # 7 expert rows in iteration 1: not 2 episodes
    iteration = np.repeat([0, 1], 12)
    args = SimpleNamespace(latch=0.3, open=0.2)
    with pytest.raises(SystemExit, match="not 2 episodes"):
        door_states.expert_phases(rows, source, iteration, 2, args)
    source[18:] = aggregator.SOURCE_EXPERT
    rows[18:, door_states.LATCH] = 0.0  # episode 3: never latched
    phases = door_states.expert_phases(rows, source, iteration, 2, args)
    assert [(e["iteration"], e["latch_step"], e["open_step"]) for e in phases] == [
        (0, 3, 5),
        (0, 1, None),
        (1, 0, 0),
        (1, None, None),
    ]
    assert [e["pull_steps_known"] for e in phases] == [True, False, True, False]


def test_door_states_refuses_other_tasks(tiny_cartpole_run):
    with pytest.raises(SystemExit, match="door runs"):
        door_states.main([str(tiny_cartpole_run), "--episodes", "1"])

"""Episodes split over host devices give the same training as one device, and checkpoints
move between device counts.

Host devices must exist before JAX starts, so the multi-device runs are one subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``. It compiles the training step once
per count (1, 2, 4) through the driver itself: an uninterrupted 1-device run, and one run
trained on 2 devices, resumed on 1, then resumed on 4 (the repeated 1-device program is a
hit in the test session's compilation cache). The task is ``point_mass``: splitting
episodes over devices does not depend on the physics, and its training step compiles about
three times faster than an MJX pendulum's, once per device count. Tolerance: the episodes
are independent (no cross-device reduction), but XLA compiles the split program
differently, so metrics and parameters agree to float32 rounding (measured 2e-7), not
bitwise.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from apexjax.configs import ConfigError, to_dict
from apexjax.loop import TrainConfig
from apexjax.sharding import make_mesh

ITEMS = [
    "iterations=3",
    "num_envs=4",
    "episode_length=4",
    "sgd_steps=5",
    "dataset_capacity=100",
    "planner.population=8",
    "planner.elites=2",
    "planner.horizon=4",
    "planner.iterations=1",
    "policy.hidden=[16]",
    "policy.batch_size=16",
    "guidance.mode=fixed",
    "guidance.weight=0.1",
]

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    import jax
    import numpy as np
    from apexjax.presets import train_config
    from apexjax.train import load_checkpoint, train

    assert jax.device_count() == 4, jax.devices()
    items, tmp = json.loads(sys.argv[1]), sys.argv[2]
    base = train_config("point_mass", overrides=items)
    seconds = {}
    # (run, iterations to reach, device count; None: a new run)
    sessions = [("one", 3, 1, None), ("moved", 1, 2, None), ("moved", 2, 1, True),
                ("moved", 3, 4, True)]
    for run, iterations, n, resume in sessions:
        t = time.perf_counter()
        cfg = dataclasses.replace(base, iterations=iterations)
        if resume:
            train(cfg, f"{tmp}/{run}", resume=True, num_devices=n)
        else:
            train(dataclasses.replace(cfg, num_devices=n), f"{tmp}/{run}")
        seconds[f"{run} on {n} to iteration {iterations}"] = round(time.perf_counter() - t, 1)
    out = {"seconds": seconds}
    for run in ("one", "moved"):
        config, state = load_checkpoint(f"{tmp}/{run}")
        out[run] = {
            "num_devices": config.num_devices,
            "iteration": int(state.iteration),
            "params": [np.asarray(x).ravel().tolist()
                       for x in jax.tree_util.tree_leaves(state.policy.params)],
            "rows": [json.loads(x) for x in open(f"{tmp}/{run}/metrics.jsonl")],
        }
    print("RESULT" + json.dumps(out))
    """
)


def _close(a, b, rel, abs_):
    return b == pytest.approx(a, rel=rel, abs=abs_)


def test_one_two_four_devices_match_and_checkpoints_move_between_counts(tmp_path):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir or ""),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1",
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(ITEMS), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    print("seconds:", out["seconds"])
    one, moved = out["one"], out["moved"]
    assert one["num_devices"] == 1 and moved["num_devices"] == 4  # the config follows the run
    assert one["iteration"] == moved["iteration"] == 3
    assert len(one["rows"]) == len(moved["rows"]) == 3
    # Iteration 1 on 2 devices, 2 on 1 (restored from 2), 3 on 4 (restored from 1): each
    # the same, to float32 rounding, as the uninterrupted 1-device run.
    for it, (a, b) in enumerate(zip(one["rows"], moved["rows"], strict=True), 1):
        assert a["dataset_size"] == b["dataset_size"] == it * 2 * 4 * 4  # expert + DAgger
        for k, v in a.items():
            if k != "seconds":
                assert _close(v, b[k], 1e-4, 1e-4), (it, k)
    for a, b in zip(one["params"], moved["params"], strict=True):
        assert _close(a, b, 1e-4, 1e-5)


def test_device_errors_are_clear():
    with pytest.raises(ConfigError, match="num_devices: 64 asked for"):
        make_mesh(64)
    with pytest.raises(ConfigError, match="num_envs: 3 episodes cannot be split"):
        TrainConfig(num_envs=3, num_devices=2)
    with pytest.raises(ConfigError, match="num_devices"):
        TrainConfig(num_devices=0)


def test_resuming_on_a_count_that_does_not_divide_the_episodes_is_one_clear_error(tmp_path):
    from apexjax.cli import main
    from apexjax.train import load_checkpoint, train, with_devices

    cfg = TrainConfig(task="pendulum_swingup", num_envs=4, num_devices=2)
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))
    allowed = "allowed: 1, 2, 4"
    with pytest.raises(ConfigError, match=f"num_envs=4 .* over 3 devices; {allowed}"):
        train(cfg, tmp_path, resume=True, num_devices=3)  # fails before reading a checkpoint
    with pytest.raises(ConfigError, match=allowed):
        load_checkpoint(tmp_path, num_devices=3)
    with pytest.raises(ConfigError, match="num_devices: expected an int >= 1"):
        with_devices(cfg, 0)
    assert with_devices(cfg, 4).num_devices == 4
    # eval checks its episodes against the device count before loading anything
    assert main(["eval", str(tmp_path), "--episodes", "8", "--devices", "3"]) == 2
    assert main(["eval", str(tmp_path), "--episodes", "3"]) == 2  # the run's own 2 devices


def test_cli_asks_for_host_devices_only_when_the_user_did_not(monkeypatch):
    from apexjax.commands import train as train_cmd
    from apexjax.commands.train import request_host_devices

    extra = " ".join(f"--{k}={v}" for k, v in train_cmd.CPU_COLLECTIVE_FLAGS.items())
    monkeypatch.setattr(train_cmd, "_jaxlib_has_cpu_collective_flags", lambda: True)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1")
    request_host_devices(4)
    assert os.environ["XLA_FLAGS"] == (
        f"--xla_cpu_foo=1 --xla_force_host_platform_device_count=4 {extra}"
    )
    # the user's own settings win, the device count and each timeout
    mine = "--xla_force_host_platform_device_count=8 --xla_cpu_collective_timeout_seconds=5"
    monkeypatch.setenv("XLA_FLAGS", mine)
    request_host_devices(2)
    assert os.environ["XLA_FLAGS"].startswith(mine)
    assert os.environ["XLA_FLAGS"].count("xla_cpu_collective_timeout_seconds") == 1
    # an older jaxlib that lacks the timeout flags gets the device count only
    monkeypatch.setattr(train_cmd, "_jaxlib_has_cpu_collective_flags", lambda: False)
    monkeypatch.setenv("XLA_FLAGS", "")
    request_host_devices(2)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    monkeypatch.delenv("XLA_FLAGS")
    request_host_devices(1)
    assert "XLA_FLAGS" not in os.environ

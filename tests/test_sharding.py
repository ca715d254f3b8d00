"""Episodes split over host devices give the same training step as one device.

Host devices must exist before JAX starts, so the multi-device run is a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``. Tolerance: the episodes are
independent (no cross-device reduction), but XLA compiles the split program differently,
so metrics and parameters agree to float32 rounding (measured 2e-6), not bitwise.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from apexjax.configs import ConfigError
from apexjax.loop import TrainConfig
from apexjax.sharding import make_mesh

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json
    import jax
    import numpy as np
    from apexjax import policy
    from apexjax.guidance import GuidanceConfig
    from apexjax.loop import TrainConfig, build_task, init_train_state, make_train_step
    from apexjax.planning.icem import ICEMConfig

    assert jax.device_count() == 2, jax.devices()
    base = TrainConfig(
        task="pendulum_swingup", num_envs=2, episode_length=8, sgd_steps=20,
        dataset_capacity=200,
        planner=ICEMConfig(population=8, elites=2, horizon=6, iterations=2),
        policy=policy.PolicyConfig(hidden=(16,), batch_size=16),
        guidance=GuidanceConfig("fixed", 0.1),
    )
    out = {}
    for n in (1, 2):
        cfg = dataclasses.replace(base, num_devices=n)
        task = build_task(cfg)
        step = make_train_step(cfg, task)
        s, m = step(init_train_state(cfg, task))
        s, m = step(s)
        params = [np.asarray(x).ravel().tolist() for x in jax.tree_util.tree_leaves(s.policy.params)]
        out[n] = {"metrics": {k: float(v) for k, v in m.items()}, "params": params,
                  "size": int(s.dataset.size)}
    print("RESULT" + json.dumps(out))
    """
)


def test_two_host_devices_match_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    one, two = out["1"], out["2"]
    assert one["size"] == two["size"] == 2 * 2 * 2 * 8  # two iterations of expert + DAgger
    for k, v in one["metrics"].items():
        assert two["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-4), k
    for a, b in zip(one["params"], two["params"], strict=True):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)


def test_device_errors_are_clear():
    with pytest.raises(ConfigError, match="num_devices: 64 asked for"):
        make_mesh(64)
    with pytest.raises(ConfigError, match="num_envs: 3 episodes cannot be split"):
        TrainConfig(num_envs=3, num_devices=2)
    with pytest.raises(ConfigError, match="num_devices"):
        TrainConfig(num_devices=0)


def test_cli_asks_for_host_devices_only_when_the_user_did_not(monkeypatch):
    from apexjax.commands.train import request_host_devices

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1")
    request_host_devices(4)
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_foo=1 --xla_force_host_platform_device_count=4"
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    request_host_devices(2)  # the user's own setting wins
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"
    monkeypatch.delenv("XLA_FLAGS")
    request_host_devices(1)
    assert "XLA_FLAGS" not in os.environ

"""Multi-process start-up: flag validation, and two processes on localhost training as one.

The two-process test starts ``apexjax train --coordinator ... --num-processes 2
--process-id I`` in two subprocesses (one CPU device each, gloo collectives). Both
processes must end with the same parameters (one state, seen by both), and only process 0
may write the run files. That the split program equals a one-device run to float32 rounding
is shown for 1, 2 and 4 devices in tests/test_sharding.py; a reference run here would cost a
third of this file's time. A hang fails the test at the subprocess timeout. The task is
cart-pole on the native backend: each process's MuJoCo host calls run inside its own part
of the distributed program (its training step compiles in seconds, unlike MJX's).
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import jax
import pytest

from apexjax.configs import ConfigError
from apexjax.distributed import DistributedConfig, initialize, is_primary, parse_address

ITEMS = [
    "iterations=2",
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
    "backend=native",
]

CHILD = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    # gloo is JAX's default CPU collectives; said explicitly for this test's processes only
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from apexjax.cli import main

    argv, run_dir = json.loads(sys.argv[1]), sys.argv[2]
    rc = main(argv)
    assert rc == 0, rc
    from apexjax.train import load_checkpoint

    # every process restores the collective checkpoint onto the global mesh
    config, state = load_checkpoint(run_dir, num_devices=jax.device_count())
    params = [np.asarray(x.addressable_data(0)).ravel().tolist()
              for x in jax.tree_util.tree_leaves(state.policy.params)]
    print("RESULT" + json.dumps({
        "process": jax.process_index(), "processes": jax.process_count(),
        "devices": jax.device_count(), "local_devices": jax.local_device_count(),
        "num_devices": config.num_devices, "params": params}), flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_as_one(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["train", "--task", "cartpole_swingup", "--run-dir", str(run_dir), "--devices", "1"]
    argv.append("--no-render")  # no video needed here
    argv += [a for item in ITEMS for a in ("--set", item)]
    port = _free_port()
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir or ""),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1",
    )
    env.pop("XLA_FLAGS", None)
    procs, logs = [], []
    for i in range(2):
        dist = [
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            str(i),
        ]
        # Files, not pipes: nothing read while this process trains may stall a child.
        out, err = (open(tmp_path / f"{i}.{s}", "w+") for s in ("out", "err"))
        logs.append((out, err))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(argv + dist), str(run_dir)],
                env=env,
                stdout=out,
                stderr=err,
                text=True,
            )
        )

    def read(i):
        return tuple((tmp_path / f"{i}.{s}").read_text() for s in ("out", "err"))

    try:
        deadline = time.monotonic() + 600
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        tails = [read(i)[1][-2000:] for i in range(2)]
        pytest.fail(f"the two processes did not finish in time:\n{tails[0]}\n---\n{tails[1]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in (f for pair in logs for f in pair):
            f.close()
    outputs = [read(i) for i in range(2)]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    results = []
    for out, _ in outputs:
        line = next(x for x in out.splitlines() if x.startswith("RESULT"))
        results.append(json.loads(line[len("RESULT") :]))
    assert [r["process"] for r in results] == [0, 1]
    for r in results:
        assert r["processes"] == 2 and r["devices"] == 2 and r["local_devices"] == 1
        assert r["num_devices"] == 2
    assert results[0]["params"] == results[1]["params"]  # one state, seen by both

    # Only process 0 wrote the run files, each once; process 1 printed no progress.
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").open()]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert json.loads((run_dir / "config.json").read_text())["num_devices"] == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["backend"] == "native"
    assert json.loads((run_dir / "metadata.json").read_text())["backend"] == "native"
    assert "iter 1/2" in outputs[0][1] and "iter 1/2" not in outputs[1][1]
    assert '"policy_return"' in outputs[0][0] and '"policy_return"' not in outputs[1][0]


@pytest.mark.parametrize(
    "address, message",
    [
        ("localhost", "expected HOST:PORT"),
        (":1234", "expected HOST:PORT"),
        ("host:port", "expected HOST:PORT"),
        ("host:0", "port must be in 1..65535"),
        ("host:70000", "port must be in 1..65535"),
        ("::1:1234", "IPv6 host in brackets"),
    ],
)
def test_bad_coordinator_addresses(address, message):
    with pytest.raises(ConfigError, match=f"coordinator: .*{message}"):
        parse_address(address)


def test_good_coordinator_addresses():
    assert parse_address("10.0.0.1:1234") == ("10.0.0.1", 1234)
    assert parse_address("node-3.cluster:65535") == ("node-3.cluster", 65535)
    assert parse_address("[::1]:8476") == ("::1", 8476)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(coordinator="h:1", num_processes=2), "missing process_id"),
        (dict(process_id=0), "missing coordinator, num_processes"),
        (dict(coordinator="h:1", num_processes=2, process_id=2), r"allowed 0\.\.1"),
        (dict(coordinator="h:1", num_processes=2, process_id=-1), "process_id: expected an int"),
        (dict(coordinator="h:1", num_processes=0, process_id=0), "num_processes: expected"),
        (dict(auto=True, num_processes=2), "auto detection excludes explicit num_processes"),
        (dict(timeout_s=0), "timeout_s: expected an int >= 1"),
    ],
)
def test_bad_distributed_configs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DistributedConfig(**kwargs)


def test_single_process_start_up_does_nothing():
    assert not DistributedConfig().enabled
    assert not initialize(DistributedConfig())
    assert not initialize(DistributedConfig(coordinator="h:1", num_processes=1, process_id=0))
    assert DistributedConfig(auto=True).enabled
    assert is_primary()


def test_start_up_checks_the_coordinator_before_jax_does():
    def start(**kw):
        initialize(DistributedConfig(num_processes=2, timeout_s=1, **kw))

    with pytest.raises(ConfigError, match=re.escape("cannot resolve host 'no-such-host.invalid'")):
        start(coordinator="no-such-host.invalid:1234", process_id=1)
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"process 0 cannot listen on port {port}"):
            start(coordinator=f"127.0.0.1:{port}", process_id=0)
    port = _free_port()
    with pytest.raises(
        ConfigError, match=re.escape(f"nothing answers at 127.0.0.1:{port} after 1 s")
    ):
        start(coordinator=f"127.0.0.1:{port}", process_id=1)


def test_start_up_after_jax_started_is_a_usage_error():
    jax.devices()  # the backends are up
    with pytest.raises(RuntimeError, match="must run before anything uses JAX"):
        initialize(
            DistributedConfig(
                coordinator=f"127.0.0.1:{_free_port()}", num_processes=2, process_id=0
            )
        )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "5"], "allowed 0..1"),
        (["--coordinator", "h:1", "--num-processes", "2"], "missing process_id"),
        (["--distributed", "auto", "--process-id", "0"], "auto detection excludes"),
    ],
)
def test_cli_bad_distributed_flags_fail_before_anything_starts(tmp_path, capsys, flags, message):
    from apexjax.cli import main

    assert main(["train", "--run-dir", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_auto_start_up_outside_a_cluster_is_one_clear_error(tmp_path):
    cluster = ("SLURM_", "OMPI_", "PMI_", "KUBERNETES_", "TPU_", "CLOUD_TPU", "JAX_COORDINATOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(cluster)}
    argv = ["train", "--distributed", "auto", "--run-dir", str(tmp_path / "r")]
    code = f"import sys; from apexjax.cli import main; sys.exit(main({argv!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "distributed auto: no cluster found" in proc.stderr
    assert not (tmp_path / "r").exists()

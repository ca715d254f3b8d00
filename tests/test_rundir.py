"""A run directory is never lost or corrupted: resume target, metrics rewind, the lock,
unreadable checkpoints, write failures, bad paths, eval/export overwrite rules and
checkpoint choice, and the episode counts behind every reported rate.

One small ``point_mass`` run (3 iterations; the training step of ``test_train.py``, so a
hit in the compilation cache) is trained once per module; each test that changes it works
on a copy.
"""

import errno
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from _tiny import tiny_config

import apexjax.train as train_mod
from apexjax.cli import main
from apexjax.commands.train import COMPILE_NOTE, Progress
from apexjax.configs import ConfigError
from apexjax.train import RunDirError, RunLock, checkpoint_steps, load_checkpoint, train

CFG = tiny_config(iterations=3)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run = tmp_path_factory.mktemp("base") / "run"
    train(CFG, run)
    return run


@pytest.fixture
def run(base, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(base, dst)
    return dst


def _rows(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _csv_iterations(run_dir):
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,")
    return [int(x.split(",")[0]) for x in lines[1:]]


def _corrupt(run_dir, step, data_only=False):
    """Overwrites every file of a checkpoint, or only its array data (TensorStore chunks)."""
    noise = random.Random(step)
    for f in (run_dir / "checkpoints" / str(step)).rglob("*"):
        if f.is_file() and (not data_only or f.parent.name == "d"):
            f.write_bytes(noise.randbytes(100) if data_only else b"not a checkpoint")


def _target(run_dir):
    return json.loads((run_dir / "config.json").read_text())["iterations"]


# 1 + 2: resume goes to the run's own target; metrics rewind to the restored checkpoint


def test_resume_keeps_the_saved_target_and_rewinds_metrics(base, run, capsys):
    # killed while saving checkpoint 3, after its metrics row (and half of another) went out
    shutil.rmtree(run / "checkpoints" / "3")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 3, "expert_ret')
    assert main(["train", "--run-dir", str(run), "--resume", "--no-render"]) == 0
    err = capsys.readouterr().err
    assert "iter 3/3" in err and "/10" not in err  # the saved target, not the CLI default
    assert "(n=2 episodes each)" in err and COMPILE_NOTE in err
    assert _rows(run) == _rows(base)  # each iteration once, as uninterrupted
    assert _csv_iterations(run) == [1, 2, 3]
    assert _target(run) == 3 and checkpoint_steps(run) == [1, 2, 3]

    stages = []
    train(None, run, resume=True, iterations=4)  # only an explicit target changes it
    assert _target(run) == 4 and [r["iteration"] for r in _rows(run)] == [1, 2, 3, 4]
    summary = train(None, run, resume=True, on_stage=stages.append)  # nothing left to do
    assert summary["final"]["iteration"] == 4 and stages == ["done"]  # nothing compiled
    assert _csv_iterations(run) == [1, 2, 3, 4]

    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="below the 4 iterations"):
        train(None, run, resume=True, iterations=2)
    assert (run / "metrics.jsonl").read_text() == before and _target(run) == 4
    assert not (run / ".lock").exists()

    assert main(["train", "--run-dir", str(run), "--resume", "--set", "sgd_steps=9"]) == 2
    assert "only --set iterations=N" in capsys.readouterr().err


def test_resume_may_change_the_dataset_window(base, run, capsys):
    args = ["train", "--run-dir", str(run), "--resume", "--no-render", "--set", "iterations=4"]
    assert main([*args, "--set", "dataset_window=1"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["dataset_window"] == 1 and saved["iterations"] == 4
    assert _rows(run)[:3] == _rows(base) and [r["iteration"] for r in _rows(run)] == [1, 2, 3, 4]
    train(None, run, resume=True)  # nothing left to do; the new window is the saved one now
    assert json.loads((run / "config.json").read_text())["dataset_window"] == 1
    with pytest.raises(ConfigError, match="dataset_window"):
        train(None, run, resume=True, dataset_window=-1)
    assert json.loads((run / "config.json").read_text())["dataset_window"] == 1


# 3: one process at a time


def test_the_lock_keeps_a_second_process_out(run, tmp_path, capsys, caplog):
    with RunLock(run) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunDirError, match=f"in use by pid {os.getpid()} on host"):
            train(None, run, resume=True)
        assert main(["train", "--run-dir", str(run), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "Traceback" not in err
        assert lock.path.exists()  # the failed runs left the holder's lock alone
    assert not (run / ".lock").exists()

    # another process holding it (flock, as RunLock does)
    holder = textwrap.dedent(
        f"""
        import fcntl, json, os, socket, sys
        fd = os.open({str(run / ".lock")!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({{"pid": os.getpid(), "host": socket.gethostname()}}).encode())
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"in use by pid {p.pid}"):
            train(None, run, resume=True)
    finally:
        p.communicate("")
    assert p.returncode == 0

    # a lock left by a process that is gone is taken over, with a warning
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with caplog.at_level(logging.WARNING, logger="apexjax"):
        train(None, run, resume=True)
    assert f"stale lock of pid {dead.pid}" in caplog.text
    assert not (run / ".lock").exists()

    # another host's lock cannot be checked from here: never taken over
    (run / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid"}))
    with pytest.raises(RunDirError, match=r"host elsewhere\.invalid.*delete"):
        train(None, run, resume=True)
    assert (run / ".lock").exists()

    # a new run into a directory in use
    new = tmp_path / "new"
    new.mkdir()
    with RunLock(new):
        with pytest.raises(RunDirError, match="in use by"):
            train(CFG, new)
    assert sorted(p.name for p in new.iterdir()) == []


# 4: an unreadable checkpoint


def test_an_unreadable_newest_checkpoint_falls_back_and_is_kept(base, run, caplog, monkeypatch):
    _corrupt(run, 3, data_only=True)  # metadata fine, arrays damaged: fails inside TensorStore
    late = []  # what would reach stderr as tracebacks from TensorStore's late callbacks
    monkeypatch.setattr(sys, "unraisablehook", late.append)
    with caplog.at_level(logging.WARNING, logger="apexjax"):
        _, state = load_checkpoint(run)
    assert int(state.iteration) == 2
    assert "checkpoints/3: unreadable checkpoint" in caplog.text
    assert max(len(x) for x in caplog.text.splitlines()) < 400  # no TensorStore spec dump
    time.sleep(0.3)  # give any straggler the chance to arrive
    assert [str(u.exc_value) for u in late] == []
    monkeypatch.undo()
    _corrupt(run, 3)
    with pytest.raises(RunDirError, match="checkpoints/3: cannot restore"):
        load_checkpoint(run, checkpoint=3)  # an explicit choice: no fallback

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="apexjax"):
        train(None, run, resume=True)
    assert "moved aside" in caplog.text
    aside = [p.name for p in (run / "checkpoints").iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].startswith("3.corrupt-")
    assert (run / "checkpoints" / aside[0] / "_METADATA").read_bytes().startswith(b"not a")
    assert checkpoint_steps(run) == [1, 2, 3] and _rows(run) == _rows(base)
    assert int(load_checkpoint(run)[1].iteration) == 3


def test_no_readable_checkpoint_is_one_short_error(run, caplog):
    for step in (1, 2, 3):
        _corrupt(run, step, data_only=True)
    with pytest.raises(RunDirError) as e:
        train(None, run, resume=True)
    msg = str(e.value)
    assert "checkpoints/3" in msg and "\n" not in msg and len(msg) < 500
    assert [r for r in caplog.records if r.name == "asyncio"] == []  # no spec dumps
    assert checkpoint_steps(run) == [1, 2, 3]  # nothing moved, nothing deleted
    assert not (run / ".lock").exists() and len(_rows(run)) == 3


# 5: write failures


def test_unwritable_files_fail_before_compiling(run, monkeypatch):
    shutil.rmtree(run / "checkpoints" / "3")
    real_access = os.access
    stages = []

    def denied(name):
        def access(path, mode, **kw):
            if os.fspath(path).endswith(name) and mode & os.W_OK:
                return False
            return real_access(path, mode, **kw)

        return access

    for name in ("metrics.jsonl", "metrics.csv", "checkpoints"):
        monkeypatch.setattr(os, "access", denied(name))
        with pytest.raises(RunDirError, match=f"{name}: not writable"):
            train(None, run, resume=True, on_stage=stages.append)
    monkeypatch.setattr(os, "access", real_access)

    def read_only(directory):
        raise OSError(errno.EROFS, "Read-only file system", str(directory))

    monkeypatch.setattr(train_mod, "_probe", read_only)
    with pytest.raises(RunDirError, match=r"checkpoints: cannot write a file there.*Read-only"):
        train(None, run, resume=True, on_stage=stages.append)
    assert stages == [] and not (run / ".lock").exists()
    assert len(_rows(run)) == 3  # not even rewound: nothing was touched

    if os.geteuid() != 0:  # the real thing (root writes through any mode)
        monkeypatch.undo()
        (run / "metrics.csv").chmod(0o444)
        with pytest.raises(RunDirError, match=r"metrics\.csv: not writable"):
            train(None, run, resume=True)


def test_a_failed_write_mid_run_loses_nothing(base, run, monkeypatch, capsys):
    shutil.rmtree(run / "checkpoints" / "3")

    def disk_full(run_dir, state, step):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_mod, "_save", disk_full)
    with pytest.raises(RunDirError, match=r"No space left.*intact up to checkpoint 2"):
        train(None, run, resume=True)
    assert checkpoint_steps(run) == [1, 2] and not (run / ".lock").exists()

    def denied(run_dir, row):
        raise PermissionError(errno.EACCES, "Permission denied", str(run_dir / "metrics.jsonl"))

    monkeypatch.setattr(train_mod, "_append_metrics", denied)
    assert main(["train", "--run-dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl: write failed (PermissionError" in err and "Traceback" not in err

    monkeypatch.undo()
    train(None, run, resume=True)  # continues from checkpoint 2 as if nothing happened
    assert _rows(run) == _rows(base) and checkpoint_steps(run) == [1, 2, 3]


# 6: a file where the run directory should be


def test_a_file_as_run_directory_is_one_clear_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("mine")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        train(CFG, f)
    with pytest.raises(RunDirError, match=r"parent .*file is a file"):
        train(CFG, f / "sub")
    for argv in (["train", "--run-dir", str(f)], ["train", "--run-dir", str(f / "sub")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "not a directory" in err and "Traceback" not in err
    assert main(["eval", str(f)]) == 2 and "not a directory" in capsys.readouterr().err
    assert f.read_text() == "mine"


# 7 + 11: eval/export never overwrite silently; episode counts; best checkpoint


def test_eval_export_checkpoint_choice_and_episode_counts(run, tmp_path, capsys):
    rows = _rows(run)
    best = max(rows, key=lambda r: (r["policy_return"], r["iteration"]))["iteration"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["iteration"] == best
    assert summary["n_episodes"]["policy_success"] == 2
    assert "| policy alone success (n=2 episodes) |" in (run / "summary.md").read_text()
    assert int(load_checkpoint(run, checkpoint="best")[1].iteration) == best
    with pytest.raises(RunDirError, match="no checkpoint 9; saved: 1, 2, 3"):
        load_checkpoint(run, checkpoint=9)

    out = tmp_path / "eval.json"
    out.write_text("keep me")
    argv = ["eval", str(run), "--episodes", "2", "--out", str(out)]
    assert main(argv) == 2 and "--force" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main([*argv, "--force", "--checkpoint", "best"]) == 0
    err = capsys.readouterr().err
    got = json.loads(out.read_text())
    assert got["iteration"] == best and got["checkpoint"] == "best" and got["episodes"] == 2
    assert "of 2 episodes" in err or "/2 episodes" in err
    assert "compiling the evaluation" in err and COMPILE_NOTE in err

    (run / "eval.json").write_text("an earlier eval")  # the run's own eval.json: re-written
    assert main(["eval", str(run), "--episodes", "2", "--checkpoint", "2"]) == 0
    assert json.loads((run / "eval.json").read_text())["iteration"] == 2
    capsys.readouterr()

    npz = tmp_path / "p.npz"
    assert main(["export", str(run), "--out", str(npz), "--checkpoint", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["iteration"] == 2
    assert main(["export", str(run), "--out", str(npz), "--checkpoint", "nope", "--force"]) == 2
    assert "--checkpoint: expected last, best" in capsys.readouterr().err


# 10: progress on a terminal


def test_progress_bar_on_a_terminal():
    import io

    stream = io.StringIO()
    bar = Progress(3, unit="iteration", stream=stream, tty=True)
    bar.stage("compiling the training step", COMPILE_NOTE)
    bar.at(1)
    bar.stage("iteration 2/3")
    bar.write("iter 2/3 ...")
    bar.advance(postfix="6 episodes")
    bar.close()
    bar.close()
    text = stream.getvalue()
    assert COMPILE_NOTE in text and "iter 2/3 ..." in text and "6 episodes" in text
    assert "2/3" in text and "\r" in text  # a redrawn bar, not lines

    plain = io.StringIO()
    bar = Progress(3, stream=plain)  # not a terminal: plain lines
    bar.stage("iteration 1/3 ...")
    bar.advance()
    bar.close()
    assert plain.getvalue() == "iteration 1/3 ...\n"

"""TensorBoard logging (apexjax.tensorboard, ``apexjax train --tensorboard``).

The event files are read back with tensorboardX's own protobufs (:func:`read_scalars`;
the ``tensorboard`` package is not needed); a tiny training run's scalars must equal its
``metrics.jsonl``, also across ``--resume``.
"""

import importlib.util
import json
import logging
import sys

import pytest
from _tiny import TINY_ITEMS

from apexjax import cli
from apexjax.configs import ConfigError
from apexjax.tensorboard import INSTALL_HINT, MetricsWriter, read_scalars

needs_tensorboardx = pytest.mark.skipif(
    importlib.util.find_spec("tensorboardX") is None,
    reason="tensorboardX (the tensorboard extra) is not installed",
)


@needs_tensorboardx
def test_rows_become_scalars_and_a_resume_replaces_redone_steps(tmp_path):
    logdir = tmp_path / "tb"
    with MetricsWriter(logdir) as w:
        for it in (1, 2, 3):
            w(it, {"iteration": it, "policy_return": -10.0 * it, "ok": True, "name": "x"})
    # resumed from checkpoint 1: iterations 2 and 3 are trained again, with new values
    with MetricsWriter(logdir) as w:
        for it in (2, 3):
            w(it, {"iteration": it, "policy_return": 5.0 * it})
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 2  # appended, not replaced
    got = read_scalars(logdir)
    assert got["policy_return"] == [(1, -10.0), (2, 10.0), (3, 15.0)]
    assert got["iteration"] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert got["ok"] == [(1, 1.0)]  # the purge hid the old steps 2 and 3 of every tag
    assert "name" not in got  # not a number


@needs_tensorboardx
def test_no_rows_no_file_and_an_unwritable_dir_only_warns(tmp_path, caplog):
    with MetricsWriter(tmp_path / "never"):
        pass
    assert not (tmp_path / "never").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    w = MetricsWriter(blocker / "tb")
    with caplog.at_level(logging.WARNING, logger="apexjax"):
        w(1, {"loss": 1.0})
        w(2, {"loss": 0.5})  # off for the rest of the run: no second warning
    warnings = [r for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warnings) == 1 and "logging is off" in warnings[0].getMessage()
    w.close()


def test_a_missing_tensorboardx_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'apexjax\[tensorboard\]'"):
        MetricsWriter(tmp_path / "tb")
    run = tmp_path / "run"
    assert cli.main(["train", "--run-dir", str(run), "--tensorboard", "--no-render"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and INSTALL_HINT in err  # one line
    assert not run.exists()  # before anything started


CFG_ITEMS = TINY_ITEMS  # tests/_tiny.py: test_train.py's config as --set items


def _scalars_match_metrics(run_dir, logdir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    got = read_scalars(logdir)
    numeric = {
        k
        for r in rows
        for k, v in r.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    assert numeric and numeric <= set(got)
    for key in numeric:
        want = [(r["iteration"], float(r[key])) for r in rows if key in r]
        steps = [s for s, _ in got[key]]
        assert steps == [s for s, _ in want], key
        values = [v for _, v in got[key]]  # float32 in the event file
        assert values == pytest.approx([v for _, v in want], rel=1e-6, nan_ok=True), key
    return rows


@needs_tensorboardx
def test_train_writes_the_metrics_rows_and_resume_appends(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--task", "point_mass", "--run-dir", str(run), "--set", "iterations=1"]
    argv += [a for item in CFG_ITEMS for a in ("--set", item)]
    assert cli.main([*argv, "--tensorboard", "--no-render"]) == 0
    logdir = run / "tensorboard"
    assert _scalars_match_metrics(run, logdir)[-1]["iteration"] == 1
    err = capsys.readouterr().err
    assert f"tensorboard --logdir {logdir}" in err
    assert not (run / "render").exists() and "render" not in err  # --no-render

    resume = ["train", "--run-dir", str(run), "--resume", "--set", "iterations=2"]
    assert cli.main([*resume, "--tensorboard", "--no-render"]) == 0
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 2
    assert [r["iteration"] for r in _scalars_match_metrics(run, logdir)] == [1, 2]

    other = tmp_path / "elsewhere"  # --tensorboard DIR; nothing left to train: no file
    argv = ["train", "--run-dir", str(run), "--resume", "--no-render"]
    assert cli.main([*argv, "--tensorboard", str(other)]) == 0
    assert not other.exists()
    capsys.readouterr()


def test_the_writer_is_also_fits_callback(tmp_path):
    # apexjax.driver.fit calls callback(iteration, row, state) and stops on a true result
    logdir = tmp_path / "tb"
    with MetricsWriter(logdir) as w:
        assert w(1, {"iteration": 1, "loss": 0.5}, object()) is None  # None: go on
        assert w(2, {"iteration": 2, "loss": 0.25}, object()) is None
    assert [v for _, v in read_scalars(logdir)["loss"]] == [0.5, 0.25]

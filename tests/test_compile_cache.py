"""The CLI's persistent compilation cache: where it lives, that it fills, and the opt-out."""

import pathlib

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

import apexjax.cli


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("APEXJAX_CACHE_DIR", raising=False)
    assert apexjax.cli.cache_dir(None) == pathlib.Path("~/.cache/apexjax/xla").expanduser()
    monkeypatch.setenv("APEXJAX_CACHE_DIR", str(tmp_path / "env"))
    assert apexjax.cli.cache_dir(None) == tmp_path / "env"
    assert apexjax.cli.cache_dir(tmp_path / "arg") == tmp_path / "arg"


@pytest.fixture
def real_cache(monkeypatch):
    """The CLI's own enable_compile_cache (conftest stubs it), with the test cache restored."""
    monkeypatch.setattr(apexjax.cli, "enable_compile_cache", _REAL_ENABLE)
    before = jax.config.jax_compilation_cache_dir
    threshold = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the tiny plan's compile
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", before)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", threshold)
    compilation_cache.reset_cache()


_REAL_ENABLE = apexjax.cli.enable_compile_cache


def _argv(*front):
    # a small plan (one iCEM iteration): what is tested is the cache, not the planner
    argv = [*front, "plan", "--task", "point_mass", "--episodes", "1", "--steps", "2"]
    argv += ["--set", "population=8", "--set", "elites=2", "--set", "horizon=3"]
    return [*argv, "--set", "iterations=1"]


def test_cli_fills_the_cache_and_honours_the_opt_out(tmp_path, real_cache):
    on = tmp_path / "on"
    assert apexjax.cli.main(_argv("--cache-dir", str(on))) == 0
    assert any(on.iterdir()), "the CLI stored no compiled program"
    off = tmp_path / "off"
    assert apexjax.cli.main(_argv("--no-compile-cache", "--cache-dir", str(off))) == 0
    assert not off.exists()

"""Shared test set-up: a persistent XLA compilation cache for the test process only.

This is test configuration, not library behaviour: the library itself never changes
JAX's global config.
"""

import os
import pathlib

import jax

_CACHE = pathlib.Path(
    os.environ.get(
        "APEXJAX_TEST_CACHE", pathlib.Path(__file__).parent.parent / ".pytest_cache" / "jax"
    )
)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _cli_keeps_test_cache(monkeypatch):
    """In-process CLI calls keep the test cache above instead of pointing JAX at the user's
    cache directory (the CLI's own cache handling is tested in a subprocess)."""
    import apexjax.cli

    monkeypatch.setattr(apexjax.cli, "enable_compile_cache", lambda path: None)

"""Shared test set-up: a persistent XLA compilation cache for the test process only, and
XLA's quick compiles.

This is test configuration, not library behaviour: the library itself never changes
JAX's global config.

The suite compiles far more than it runs, so it asks XLA not to spend time optimising
what it compiles (``JAX_DISABLE_MOST_OPTIMIZATIONS``: backend optimisation level 0, LLVM's
expensive passes off), in this process and in the processes the tests start, which inherit
the environment. Measured side by side on the 2-core CPU (``make test``'s command, fresh
compilation caches): the whole suite took 694 s fully optimised and 526 s with quick
compiles in all files but Fetch, door, adapters and MJX fidelity; quick, those files' tests
got faster too (the door's MJX check 89 s -> 69 s, the humanoid's fidelity check 42 s ->
30 s), all but Fetch's: unoptimised, its MJX check ran for more than 15 minutes without
finishing, so the Fetch file (``_OPTIMISED``) keeps XLA's full optimisation. So set, the
suite took 469, 505, 591, 642 and 343 s in five fresh-clone runs (``bash .ci/run``, 809-811
tests; 591-656 s before, fully optimised: this shared machine's speed varies by up to half
between runs). The programs compute the same functions either way; float32 results can
differ in the last bits (fused multiply-adds), which no tolerance in the suite is that tight
about.
``JAX_DISABLE_MOST_OPTIMIZATIONS=0`` runs the whole suite fully optimised.
"""

import os
import pathlib

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax

_CACHE = pathlib.Path(
    os.environ.get(
        "APEXJAX_TEST_CACHE", pathlib.Path(__file__).parent.parent / ".pytest_cache" / "jax"
    )
)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
_QUICK = jax.config.read("jax_disable_most_optimizations")  # JAX parses the variable
_OPTIMISED = frozenset({"test_fetch.py"})


import pytest  # noqa: E402


def pytest_runtest_setup(item):
    """XLA's quick compiles for this test (set before its fixtures, whatever their scope)
    unless its file is one of ``_OPTIMISED``."""
    jax.config.update("jax_disable_most_optimizations", _QUICK and item.path.name not in _OPTIMISED)


@pytest.fixture(autouse=True)
def _cli_keeps_test_cache(monkeypatch):
    """In-process CLI calls keep the test cache above instead of pointing JAX at the user's
    cache directory (the CLI's own cache handling is tested in a subprocess)."""
    import apexjax.cli

    monkeypatch.setattr(apexjax.cli, "enable_compile_cache", lambda path: None)


@pytest.fixture
def register_task():
    """``register_task(name, factory, config_cls)``: :func:`apexjax.envs.register` for this
    test only; every task it registered is removed again afterwards."""
    import apexjax.envs as envs

    names = []

    def register(name, factory, config_cls):
        envs.register(name, factory, config_cls)
        names.append(name)

    yield register
    for name in names:
        envs.unregister(name)


@pytest.fixture(scope="session")
def _tiny_cartpole_trained(tmp_path_factory):
    from _tiny import TINY_CARTPOLE

    from apexjax.train import train

    run = tmp_path_factory.mktemp("tiny_cartpole") / "run"
    train(TINY_CARTPOLE, run)
    return run


@pytest.fixture(scope="module")
def tiny_cartpole_run(_tiny_cartpole_trained, tmp_path_factory):
    """A copy, for this test module, of ``_tiny.TINY_CARTPOLE`` trained for one iteration:
    trained once per test process (a native training step cannot be kept in the
    compilation cache), copied so that what one module writes into it no other sees."""
    import shutil

    dst = tmp_path_factory.mktemp("tiny_cartpole_copy") / "run"
    shutil.copytree(_tiny_cartpole_trained, dst)
    return dst


# The files that take longest (measured with ``--durations`` on a fresh clone: mostly the MJX
# compiles of the paper's models, the MJX fidelity checks and the closed-loop solves) run
# first, so that with ``-n 2 --dist loadfile --no-loadscope-reorder`` (the Makefile's
# command) the short files fill in at the end instead of one worker finishing a long file
# alone. Only the order changes.
_LONGEST_FIRST = (
    "test_fetch.py",
    "test_fidelity.py",
    "test_door.py",
    "test_mpc.py",
    "test_loop.py",
    "test_adapters.py",
    "test_sharding.py",
    "test_train.py",
    "test_docs.py",
    "test_distributed.py",
    "test_relabel.py",
    "test_native.py",
    "test_envs.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    order = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda it: (rank.get(it.path.name, len(rank)), order[id(it)]))

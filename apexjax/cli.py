"""``apexjax`` command line: ``plan``, ``train``, ``eval``, ``compare``, ``export``,
``bench``, ``presets`` (see ``apexjax COMMAND --help``).

Every subcommand validates its arguments and config overrides before compiling anything;
a bad value exits with status 2 and one message naming the field and what is allowed.

Tasks of your own: ``apexjax --import MODULE COMMAND ...`` imports MODULE first, so the
``apexjax.envs.register(...)`` calls in it add its tasks (repeatable); an installed
package can instead declare its tasks as ``apexjax.tasks`` entry points, which load when
their name is looked up (:mod:`apexjax.envs.registry`). A run of such a task records the
imported modules (``task_modules`` in its ``metadata.json``), and ``eval``, ``export`` and
``train --resume`` on that run import them again by themselves.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pathlib
import sys
from typing import Any

from apexjax.configs import ConfigError

__all__ = ["import_run_modules", "main", "with_task_modules"]

# subcommand -> module in apexjax.commands (imported only when used: keeps --help fast)
_COMMANDS = {
    "plan": "Run the iCEM planner closed-loop (MPC) on a task.",
    "train": "Train an APEX policy.",
    "eval": "Evaluate a trained run: policy alone vs expert.",
    "compare": "A run's planner alone, policy alone and policy with a small planner: a table.",
    "export": "Export a trained run's policy to a NumPy-only .npz file.",
    "render": "Videos of a trained run: the policy alone and the expert, MP4/GIF and a filmstrip.",
    "bench": "Benchmarks against the alternatives, side by side: JSON and a Markdown table.",
    "presets": "List the named training budgets (paper, cpu, ...) of each task.",
}


_CACHE_ENV = "APEXJAX_CACHE_DIR"
_DEFAULT_CACHE = "~/.cache/apexjax/xla"


def cache_dir(arg: pathlib.Path | None) -> pathlib.Path:
    """The compilation cache directory: ``--cache-dir``, else ``$APEXJAX_CACHE_DIR``, else
    ``~/.cache/apexjax/xla``."""
    if arg is not None:
        return arg.expanduser()
    return pathlib.Path(os.environ.get(_CACHE_ENV) or _DEFAULT_CACHE).expanduser()


def enable_compile_cache(path: pathlib.Path) -> None:
    """Turns on JAX's persistent compilation cache at ``path`` for this process.

    Only the command line calls this (a library must not change JAX's global config); code
    that uses apexjax as a library can do the same with ``jax.config.update``. Programs that
    compile in under a second are not stored (JAX's default threshold).
    """
    import jax

    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))


# apexjax.envs.registry.TASK_MODULES_ENV (not imported here: keeps `apexjax --help` fast)
_TASK_MODULES_ENV = "APEXJAX_TASK_MODULES"


def import_run_modules(run_dir: pathlib.Path) -> list[str]:
    """Imports the task modules a run recorded (``task_modules`` in ``RUN_DIR/metadata.json``)
    so that its task is registered before the run is loaded; returns them.

    A run without the file or the entry needs none (shipped tasks, adapters, entry-point
    tasks).

    Raises:
      ConfigError: a recorded module cannot be imported (the message names it and the run).
    """
    path = pathlib.Path(run_dir) / "metadata.json"
    try:
        modules = json.loads(path.read_text()).get("task_modules") or []
    except (OSError, ValueError, AttributeError):
        return []  # no readable metadata: loading the run reports what is wrong
    if not modules:
        return []
    from apexjax.envs import registry

    if not isinstance(modules, list):
        raise ConfigError(f"{path}: task_modules must be a list of module names, got {modules!r}")
    return registry.import_task_modules(
        modules, source=f"{path} (task_modules the run was trained with)"
    )


def with_task_modules(metadata: dict[str, Any] | None, task: str) -> dict[str, Any] | None:
    """``metadata`` of a new run of ``task`` with the modules it needs (``task_modules``):
    for a task registered by a user module, the ``--import`` modules and those of
    ``$APEXJAX_TASK_MODULES``; ``metadata`` unchanged otherwise."""
    from apexjax.envs import registry

    modules = registry.env_task_modules()
    if not modules or not registry.is_user_task(task):
        return metadata
    return {**(metadata or {}), "task_modules": modules}


def _import_modules(modules: list[str]) -> None:
    """``--import``: imports ``modules`` and names them in ``$APEXJAX_TASK_MODULES`` for the
    command's child processes (and for :func:`with_task_modules`)."""
    from apexjax.envs import registry

    registry.import_task_modules(modules, source="--import")
    known = registry.env_task_modules()
    os.environ[_TASK_MODULES_ENV] = ",".join(known + [m for m in modules if m not in known])


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apexjax", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (by default compiled programs are "
        "kept in --cache-dir, so the second run of the same config skips most of the compile)",
    )
    parser.add_argument(
        "--cache-dir",
        type=pathlib.Path,
        default=None,
        help=f"compilation cache directory (default: ${_CACHE_ENV} or {_DEFAULT_CACHE})",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE before the command runs (repeatable), so that its "
        "apexjax.envs.register(...) calls add your own tasks; a run records these modules "
        "and eval, export and train --resume import them again",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in _COMMANDS.items():
        try:
            module = importlib.import_module(f"apexjax.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"apexjax.commands.{name}":
                raise
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        module.add_parser(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        # Our own INFO lines only; the libraries' INFO chatter (checkpoint internals,
        # backend probing) is for --verbose.
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("apexjax").setLevel(logging.INFO)
    saved_modules = os.environ.get(_TASK_MODULES_ENV)
    try:
        if args.imports:
            _import_modules(args.imports)
        if not args.no_compile_cache and args.command not in ("export", "presets"):
            enable_compile_cache(cache_dir(args.cache_dir))
        return int(args._run(args) or 0)
    except ConfigError as e:
        print(f"apexjax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:  # main() may be called again in the same process (tests, scripts)
        if saved_modules is None:
            os.environ.pop(_TASK_MODULES_ENV, None)
        else:
            os.environ[_TASK_MODULES_ENV] = saved_modules


if __name__ == "__main__":
    sys.exit(main())

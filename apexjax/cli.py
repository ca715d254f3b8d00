"""``apexjax`` command line: ``plan``, ``train``, ``eval``, ``export``, ``bench``,
``presets`` (see ``apexjax COMMAND --help``).

Every subcommand validates its arguments and config overrides before compiling anything;
a bad value exits with status 2 and one message naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pathlib
import sys

from apexjax.configs import ConfigError

__all__ = ["main"]

# subcommand -> module in apexjax.commands (imported only when used: keeps --help fast)
_COMMANDS = {
    "plan": "Run the iCEM planner closed-loop (MPC) on a task.",
    "train": "Train an APEX policy.",
    "eval": "Evaluate a trained run: policy alone vs expert.",
    "export": "Export a trained run's policy to a NumPy-only .npz file.",
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
    try:
        if not args.no_compile_cache and args.command not in ("export", "presets"):
            enable_compile_cache(cache_dir(args.cache_dir))
        return int(args._run(args) or 0)
    except ConfigError as e:
        print(f"apexjax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

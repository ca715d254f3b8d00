"""``apexjax`` command line: ``plan``, ``train``, ``eval``, ``export`` (see ``apexjax COMMAND --help``).

Every subcommand validates its arguments and config overrides before compiling anything;
a bad value exits with status 2 and one message naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from apexjax.configs import ConfigError

__all__ = ["main"]

# subcommand -> module in apexjax.commands (imported only when used: keeps --help fast)
_COMMANDS = {
    "plan": "Run the iCEM planner closed-loop (MPC) on a task.",
    "train": "Train an APEX policy.",
    "eval": "Evaluate a trained run: policy alone vs expert.",
    "export": "Export a trained run's policy to a NumPy-only .npz file.",
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apexjax", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
        return int(args._run(args) or 0)
    except ConfigError as e:
        print(f"apexjax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

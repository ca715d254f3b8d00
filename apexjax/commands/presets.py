"""``apexjax presets``: the named training budgets of each task, their cost in simulated
steps and how many times fewer than ``paper`` (optionally one preset's ``--set`` items)."""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=None, help="only this task (default: every task)")
    p.add_argument(
        "--show",
        default=None,
        metavar="NAME",
        help="print preset NAME of --task as the --set items it stands for",
    )


def run(args: argparse.Namespace) -> int:
    from apexjax import presets
    from apexjax.configs import ConfigError

    if args.show is not None:
        if args.task is None:
            raise ConfigError("--show: needs --task")
        for item in presets.override_items(presets.preset_overrides(args.task, args.show)):
            print(f"--set {item}")
        return 0
    if args.task is not None and not presets.preset_names(args.task):
        presets.preset_overrides(args.task, "paper")  # raises: names the tasks with presets
    print(presets.budget_table(None if args.task is None else [args.task]), end="")
    return 0

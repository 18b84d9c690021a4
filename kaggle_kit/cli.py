"""The `kaggle-kit` command line.

Each capability registers its own sub-commands through an ``add_commands(subparsers)`` function in its module;
workloads plug in through the ``kaggle_kit.commands`` entry-point group, so this module never imports them.
A command's handler takes the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points
from typing import Sequence

from kaggle_kit.errors import KaggleKitError

# Modules of the generic kit that contribute sub-commands; imported only when the CLI runs.
_COMMAND_MODULES = (
    "kaggle_kit.doctor",
    "kaggle_kit.sim.cli",
    "kaggle_kit.lint",
    "kaggle_kit.notebooks",
    "kaggle_kit.rehearsal",
)


def _register_all(subparsers: argparse._SubParsersAction) -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # capability not built in this checkout
                continue
            raise
        module.add_commands(subparsers)
    for ep in entry_points(group="kaggle_kit.commands"):
        try:
            add_commands = ep.load()
        except ModuleNotFoundError:
            continue
        add_commands(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kaggle-kit", description="Make long training runs survive Kaggle.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_all(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KaggleKitError as exc:
        print(f"kaggle-kit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kaggle-kit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

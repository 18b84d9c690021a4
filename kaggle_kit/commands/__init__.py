"""The ``kaggle-kit`` command line: one module per command, plus workload plugins.

Each command module has ``register(subparsers)``, which adds its parser with ``set_defaults(func=run)``, and
``run(args) -> int``, the exit status. Workloads add commands through the ``kaggle_kit.commands`` entry-point group
(see :mod:`kaggle_kit.commands.plugins`), so this package never imports them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from kaggle_kit.commands import (
    doctor,
    init,
    lint,
    output,
    publish_code,
    publish_kit,
    push,
    rehearse,
    render,
    run,
    sim,
    status,
)
from kaggle_kit.commands.plugins import register_plugins
from kaggle_kit.errors import KaggleKitError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (init, doctor, lint, render, publish_code, publish_kit, push, status, output, run, rehearse, sim)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, the plugins' included."""
    parser = argparse.ArgumentParser(prog="kaggle-kit", description="Make long training runs survive Kaggle.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    notices = register_plugins(subparsers)
    if notices:
        parser.epilog = "\n".join(notices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for an error the kit explains, 130 when interrupted)."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # A plugin that could not load takes any arguments: running it says why, whatever they were.
    if extras and getattr(args, "unavailable_plugin", None) is None:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
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

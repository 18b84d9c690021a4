"""Until ``kaggle_kit.commands`` wires every command: hands ``kaggle-kit sim`` to :mod:`kaggle_kit.commands.sim`."""

from __future__ import annotations

from kaggle_kit.commands.sim import Subparsers, register


def add_commands(subparsers: Subparsers) -> None:
    register(subparsers)

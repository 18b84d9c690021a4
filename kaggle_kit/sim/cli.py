"""Until ``kaggle_kit.commands`` wires every command: hands ``kaggle-kit sim`` to :mod:`kaggle_kit.commands.sim`."""

from __future__ import annotations

import argparse

from kaggle_kit.commands.sim import register


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    register(subparsers)

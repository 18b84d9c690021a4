"""The ``kaggle-kit`` console script's entry point; the commands live in :mod:`kaggle_kit.commands`."""

from __future__ import annotations

from kaggle_kit.commands import build_parser, main

__all__ = ["build_parser", "main"]

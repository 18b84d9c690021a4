"""``kaggle-kit push``: render, lint and push a declared notebook through the API."""

from __future__ import annotations

import argparse

from kaggle_kit.commands.arguments import add_render_arguments, project_from, render_options
from kaggle_kit.notebooks import push

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push", help="render, lint and push a declared notebook through the API",
        description="Render, lint and push a declared notebook. Exit status: 0 when a version was created (with a "
                    "warning when the server reported problems but the version runs anyway), 2 when nothing was "
                    "created.")
    parser.add_argument("notebook", help="a declared notebook")
    parser.add_argument("--no-lint", action="store_true", help="skip the metadata lint")
    add_render_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = push(project_from(args), args.notebook, render_options(args), lint=not args.no_lint)
    print(("WARNING: " if result.problems else "") + result.describe())
    return 0

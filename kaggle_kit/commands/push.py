"""``kaggle-kit push``: render, lint and push a kernel through the API."""

from __future__ import annotations

import argparse

from kaggle_kit.commands.arguments import add_render_arguments, project_root, render_options
from kaggle_kit.notebooks import KERNELS, push

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("push", help="render, lint and push a kernel through the API")
    parser.add_argument("kernel", choices=KERNELS)
    parser.add_argument("--no-lint", action="store_true", help="skip the metadata lint")
    add_render_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = push(project_root(args), args.kernel, render_options(args), lint=not args.no_lint)
    print(f"pushed {result['ref']} version {result['version']}: {result['url']}")
    return 0

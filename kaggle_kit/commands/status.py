"""``kaggle-kit status``: the latest run's status of a kernel."""

from __future__ import annotations

import argparse

from kaggle_kit.commands.arguments import add_root_argument, kernel_from
from kaggle_kit.kernels import kernel_status

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="the latest run's status of a kernel")
    parser.add_argument("kernel", nargs="?", default="train", help="a declared notebook or owner/slug (default: train)")
    add_root_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = kernel_status(kernel_from(args))
    line = f"{result['ref']}: {result['status']}"
    print(line + (f" ({result['failure_message']})" if result["failure_message"] else ""))
    return 0 if result["status"] != "ERROR" else 1

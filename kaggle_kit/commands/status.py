"""``kaggle-kit status``: how the latest run of a kernel stands or ended."""

from __future__ import annotations

import argparse

from kaggle_kit.commands.arguments import add_root_argument, kernel_from
from kaggle_kit.kernels import kernel_outcome

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="how the latest run of a kernel stands or ended",
        description="Prints Kaggle's status and what it means (finished, still going, stopped at a limit, the "
                    "notebook raised, failed). Exit status: 0 finished or still going, 1 stopped or failed.")
    parser.add_argument("kernel", nargs="?", default="train", help="a declared notebook or owner/slug (default: train)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="the session limit it was pushed with, to tell a stop at the limit apart")
    add_root_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = kernel_from(args)
    outcome = kernel_outcome(ref, time_limit_s=args.time_limit)
    print(f"{ref}: {outcome.status or 'no status'} ({outcome.kind.replace('_', ' ')}: {outcome.reason})")
    if outcome.failure_message and outcome.failure_message not in outcome.reason:
        print(f"  Kaggle's failure message: {outcome.failure_message}")
    return 1 if outcome.terminal and not outcome.ok else 0

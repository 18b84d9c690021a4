"""``kaggle-kit output``: download a kernel's latest output files and log."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_kit.commands.arguments import add_root_argument, kernel_from
from kaggle_kit.kernels import kernel_output
from kaggle_kit.project import KERNEL_OUTPUT_DIR

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("output", help="download a kernel's latest output and log")
    parser.add_argument("kernel", nargs="?", default="train",
                        help="a declared notebook or owner/slug (default: train)")
    add_root_argument(parser)
    parser.add_argument("--dest", help=f"download folder (default: {KERNEL_OUTPUT_DIR}/<slug>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = kernel_from(args)
    dest = Path(args.dest or Path(KERNEL_OUTPUT_DIR) / ref.split("/")[1])
    files = kernel_output(ref, dest)
    print(f"{len(files)} files of {ref} in {dest}")
    return 0

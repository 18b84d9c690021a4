"""``kaggle-kit output``: download a kernel's latest output files and log."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_kit.commands.arguments import add_root_argument, kernel_from
from kaggle_kit.kernels import kernel_output

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("output", help="download a kernel's latest output and log")
    parser.add_argument("kernel", nargs="?", default="train", help="train, infer or owner/slug (default: train)")
    add_root_argument(parser)
    parser.add_argument("--dest", help="download folder (default: kernel-output/<slug>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = kernel_from(args)
    dest = Path(args.dest or Path("kernel-output") / ref.split("/")[1])
    files = kernel_output(ref, dest)
    print(f"{len(files)} files of {ref} in {dest}")
    return 0

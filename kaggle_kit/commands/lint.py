"""``kaggle-kit lint``: check kernel-metadata.json before ``kaggle kernels push``."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_kit.lint import METADATA_FILE, lint_kernel_metadata

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lint", help="check kernel-metadata.json before pushing",
                                   description="Check kernel-metadata.json before `kaggle kernels push`.")
    parser.add_argument("-p", "--path", default=".", help="folder holding kernel-metadata.json (default: .)")
    parser.add_argument("--checkpoint-dataset", metavar="OWNER/SLUG",
                        help="the checkpoint mirror, which must be in dataset_sources")
    parser.add_argument("--no-mirroring", action="store_true",
                        help="checkpoints are not mirrored, so internet may be off (e.g. a submission)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    findings = lint_kernel_metadata(args.path, mirroring=not args.no_mirroring,
                                    checkpoint_dataset=args.checkpoint_dataset)
    for finding in findings:
        print(finding)
    errors = sum(f.severity == "error" for f in findings)
    where = Path(args.path) / METADATA_FILE
    print(f"{errors} error(s) in {where}" if errors else f"{where}: ready to push")
    return 1 if errors else 0

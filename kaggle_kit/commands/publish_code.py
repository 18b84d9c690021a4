"""``kaggle-kit publish-code``: version the code dataset named by dataset-metadata.json."""

from __future__ import annotations

import argparse

from kaggle_kit.code_dataset import publish_code
from kaggle_kit.commands.arguments import add_root_argument, project_root

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("publish-code", help="version the code dataset from dataset-metadata.json")
    add_root_argument(parser)
    parser.add_argument("--notes", default="kaggle-kit publish-code", help="version notes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = publish_code(project_root(args), notes=args.notes)
    verb = "created" if result["created"] else "versioned"
    print(f"{verb} {result['ref']} with {len(result['files'])} files")
    return 0

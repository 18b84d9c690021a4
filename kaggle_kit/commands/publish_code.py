"""``kaggle-kit publish-code``: version the project's code dataset."""

from __future__ import annotations

import argparse

from kaggle_kit.code_dataset import publish_code
from kaggle_kit.commands.arguments import add_root_argument, project_from

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish-code", help="version the project's code dataset",
        description="Upload what git tracks (plus the declaration's [publish] include, minus its exclude; without "
                    "git, those rules alone) as the declared code dataset. Never outputs, checkpoints, "
                    "environments or secrets.")
    add_root_argument(parser)
    parser.add_argument("--notes", default="kaggle-kit publish-code", help="version notes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = publish_code(project_from(args), notes=args.notes)
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    verb = "created" if result["created"] else "versioned"
    print(f"{verb} {result['ref']}: uploaded {len(result['files'])} files, {result['bytes']} bytes")
    return 0

"""``kaggle-kit publish-kit``: version a dataset holding the kit's source, for notebooks to import offline."""

from __future__ import annotations

import argparse

from kaggle_kit.code_dataset import publish_kit
from kaggle_kit.commands.arguments import add_root_argument, project_from
from kaggle_kit.errors import DeclarationError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish-kit", help="version the dataset the notebooks import the kit from",
        description="Upload the running kit's source as the project's kit-dataset (or --dataset). A rendered "
                    "notebook attaches it and its bootstrap puts it on sys.path: the kit reaches a Kaggle session "
                    "with internet off.")
    add_root_argument(parser)
    parser.add_argument("--dataset", metavar="OWNER/SLUG", help="the dataset (default: the declared kit-dataset)")
    parser.add_argument("--notes", default="kaggle-kit publish-kit", help="version notes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = args.dataset
    if not dataset:
        project = project_from(args)
        if project.kit_dataset is None:
            raise DeclarationError(f"{project.file}: kit-dataset is \"\" (the code dataset carries the kit): "
                                   "nothing to publish; pass --dataset OWNER/SLUG to publish one anyway")
        dataset = project.kit_dataset
    result = publish_kit(dataset, notes=args.notes)
    verb = "created" if result["created"] else "versioned"
    print(f"{verb} {result['ref']}: uploaded {len(result['files'])} files, {result['bytes']} bytes")
    return 0

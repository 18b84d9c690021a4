"""``kaggle-kit init``: a small, working project that uses the kit (or what an existing repository lacks)."""

from __future__ import annotations

import argparse

from kaggle_kit.kaggle_api import find_credentials
from kaggle_kit.scaffold import init_project

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init", help="write a small working project (or add what an existing one lacks)",
        description="Write the project declaration, a package with a tiny model, a synthetic data factory and a "
                    "typed config, notebooks/train.py and notebooks/infer.py, kernel-metadata.json, "
                    "dataset-metadata.json and a .gitignore. Files that exist are never overwritten. Then "
                    "`kaggle-kit rehearse` rehearses it offline.")
    parser.add_argument("directory", nargs="?", default=".", help="the project folder (default: .)")
    parser.add_argument("--name", help="project name (default: the folder's name)")
    parser.add_argument("--owner", help="your Kaggle user name (default: from your Kaggle credentials, else a "
                        "placeholder)")
    parser.add_argument("--package", help="Python package name (default: the project name with _ for -)")
    parser.add_argument("--no-infer", action="store_true", help="no inference notebook")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    owner = args.owner
    if owner is None:
        credentials = find_credentials()
        owner = credentials.username if credentials is not None else None
    result = init_project(args.directory, name=args.name, owner=owner, package=args.package,
                          infer=not args.no_infer)
    for path in result.written:
        print(f"wrote {path.relative_to(result.root)}")
    for path in result.kept:
        print(f"kept  {path.relative_to(result.root)} (exists)")
    if result.gitignore_added:
        print(f"added to .gitignore: {', '.join(result.gitignore_added)}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"project {result.name!r} in {result.root}; next: cd {result.root} && kaggle-kit rehearse")
    return 1 if any("does not render" in note for note in result.notes) else 0

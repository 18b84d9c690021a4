"""``kaggle-kit render``: the declared notebooks into pushable kernel folders."""

from __future__ import annotations

import argparse

from kaggle_kit.commands.arguments import add_render_arguments, project_from, render_options
from kaggle_kit.notebooks import render

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render the declared notebooks into pushable kernel folders",
                                   description="Render a declared notebook (or all of them) into notebooks/build/NAME "
                                               "with its parameters injected and its kernel-metadata.json; the "
                                               "config is checked against the notebook's schema first.")
    parser.add_argument("notebook", nargs="?", default=None, help="a declared notebook (default: all of them)")
    add_render_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    project = project_from(args)
    options = render_options(args)
    for name in [args.notebook] if args.notebook else list(project.notebooks):
        rendered = render(project, name, options)
        print(f"{name}: {rendered.notebook} ({rendered.ref}); push with: kaggle kernels push -p {rendered.folder}")
        for warning in rendered.warnings:
            print(f"warning: {warning}")
    return 0

"""``kaggle-kit render``: notebooks/*.py into pushable kernel folders."""

from __future__ import annotations

import argparse

from kaggle_kit.commands.arguments import add_render_arguments, project_root, render_options
from kaggle_kit.notebooks import KERNELS, render

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render notebooks/*.py into pushable kernel folders")
    parser.add_argument("kernel", nargs="?", default="all", choices=(*KERNELS, "all"))
    add_render_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = project_root(args)
    options = render_options(args)
    for kernel in KERNELS if args.kernel == "all" else (args.kernel,):
        rendered = render(root, kernel, options)
        print(f"{kernel}: {rendered.notebook} ({rendered.ref}); push with: kaggle kernels push -p {rendered.folder}")
        for warning in rendered.warnings:
            print(f"warning: {warning}")
    return 0

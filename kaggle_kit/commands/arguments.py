"""Arguments several commands share: the project root, what to render and attach, which notebook."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import MetadataError
from kaggle_kit.notebooks import RenderOptions, kernel_ref
from kaggle_kit.project import Project, load_project
from kaggle_kit.root import find_root

__all__ = ["add_render_arguments", "add_root_argument", "kernel_from", "parse_params", "project_from",
           "project_root", "render_options"]


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="project root (default: found from the current folder)")


def project_root(args: argparse.Namespace) -> Path:
    """``--root``, or the project root found from the current folder (never from where the kit is installed)."""
    return Path(args.root) if args.root else find_root(Path.cwd()).path


def project_from(args: argparse.Namespace) -> Project:
    """The project declared at ``--root`` or at the root found from the current folder."""
    return load_project(project_root(args))


def kernel_from(args: argparse.Namespace) -> str:
    """The ``owner/slug`` that the ``kernel`` argument (a declared notebook's name, or ``owner/slug``) stands for."""
    return args.kernel if "/" in args.kernel else kernel_ref(project_root(args), args.kernel)


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs of ``--param``, each value a Python literal (a bare word is a string).

    Raises:
        MetadataError: an item is not ``NAME=VALUE`` with NAME an identifier.
    """
    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise MetadataError(f"--param {item!r}: write NAME=VALUE, e.g. --param checkpoint_every_minutes=5")
        try:
            params[name.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[name.strip()] = raw
    return params


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``render`` and ``push``: the project root and what to change from the declaration."""
    add_root_argument(parser)
    parser.add_argument("--config", help="config file relative to the root (default: the declared one)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--competition", help="competition slug (default: the declared one, if any)")
    parser.add_argument("--checkpoint-dataset", help="checkpoint dataset owner/slug (default: the declared one; "
                        "'' for none)")
    parser.add_argument("--dataset", action="append", help="another dataset to attach (repeatable)")
    parser.add_argument("--model", action="append", help="Kaggle Model to attach (repeatable; replaces the declared "
                        "ones)")
    parser.add_argument("--kernel-source", action="append", help="a notebook's output to attach, owner/slug "
                        "(repeatable)")
    parser.add_argument("--accelerator", help="none, gpu, tpu or a machine shape such as NvidiaTeslaT4 (default: "
                        "the declared one)")
    parser.add_argument("--internet", choices=("on", "off"), help="internet for the session (default: the declared "
                        "setting; off needs --checkpoint-dataset '' when the notebook mirrors)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="another notebook parameter as a "
                        "Python literal, e.g. checkpoint_every_minutes=5; the parameters cell must assign NAME")
    parser.add_argument("--run-name", help="the run's name, injected as run_name (the checkpoints' run identity)")
    parser.add_argument("--previous-output", metavar="OWNER/SLUG", help="the earlier session's output to resume "
                        "from without a mirror: attached, and injected as previous_output")


def render_options(args: argparse.Namespace) -> RenderOptions:
    """The :class:`RenderOptions` that :func:`add_render_arguments`'s flags give."""
    return RenderOptions(
        config=args.config, overrides=tuple(args.set or ()), competition=args.competition,
        checkpoint_dataset=args.checkpoint_dataset, datasets=tuple(args.dataset or ()),
        models=tuple(args.model) if args.model else None, kernels=tuple(args.kernel_source or ()),
        accelerator=args.accelerator, internet=None if args.internet is None else args.internet == "on",
        params=parse_params(args.param or ()), run_name=args.run_name, previous_output=args.previous_output,
    )

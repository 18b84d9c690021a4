"""Arguments several commands share: the project root, what to render and attach, which kernel."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import MetadataError
from kaggle_kit.notebooks import RenderOptions, kernel_ref
from kaggle_kit.root import find_root

__all__ = ["add_render_arguments", "add_root_argument", "kernel_from", "parse_params", "project_root",
           "render_options"]


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="project root (default: found from the current folder)")


def project_root(args: argparse.Namespace) -> Path:
    """``--root``, or the project root found from the current folder."""
    return Path(args.root) if args.root else find_root().path


def kernel_from(args: argparse.Namespace) -> str:
    """The ``owner/slug`` that the ``kernel`` argument (``train``, ``infer`` or ``owner/slug``) stands for."""
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
    """The flags of ``render`` and ``push``: the project root, the config and what the kernels attach."""
    add_root_argument(parser)
    parser.add_argument("--config", default="default", help="workload config: a path under the root or a shipped "
                        "name such as tiny (default: default)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--competition", help="competition slug (default: from kernel-metadata.json)")
    parser.add_argument("--code-dataset", help="code dataset owner/slug (default: from dataset-metadata.json)")
    parser.add_argument("--checkpoint-dataset", help="checkpoint mirror owner/slug (default: <owner>/<kernel>-ckpt; "
                        "'' for no mirroring)")
    parser.add_argument("--dataset", action="append", help="another dataset to attach (repeatable)")
    parser.add_argument("--model", action="append", help="Kaggle Model to attach (repeatable; default: "
                        "kernel-metadata.json's model_sources)")
    parser.add_argument("--kernel-source", action="append", help="a notebook's output to attach, owner/slug "
                        "(repeatable), e.g. the previous run's checkpoints when mirroring is off")
    parser.add_argument("--accelerator", default="auto", choices=("auto", "gpu", "cpu"), help="device plan")
    parser.add_argument("--internet", default="on", choices=("on", "off"), help="internet for the training kernel "
                        "(off needs --checkpoint-dataset '')")
    parser.add_argument("--machine-shape", help="kernel machine_shape, e.g. NvidiaTeslaT4")
    parser.add_argument("--infer-id", help="inference kernel owner/slug (default: <owner>/<kernel>-infer)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="another notebook parameter as a "
                        "Python literal, e.g. checkpoint_every_minutes=5 or train_options={'num_workers':2}")


def render_options(args: argparse.Namespace) -> RenderOptions:
    """The :class:`RenderOptions` that :func:`add_render_arguments`'s flags give."""
    return RenderOptions(
        config=args.config, overrides=tuple(args.set or ()), competition=args.competition,
        code_dataset=args.code_dataset, checkpoint_dataset=args.checkpoint_dataset, datasets=tuple(args.dataset or ()),
        models=tuple(args.model) if args.model else None, kernels=tuple(args.kernel_source or ()),
        accelerator=args.accelerator, internet=args.internet == "on",
        machine_shape=args.machine_shape, infer_id=args.infer_id, extra=parse_params(args.param or ()),
    )

"""``kaggle-kit rehearse``: a whole Kaggle training run offline, kills included."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_kit.rehearsal import (
    ACCELERATOR_SHAPES,
    DEFAULT_WORKDIR,
    RehearsalOptions,
    format_report,
    load_workload,
    rehearse,
)

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rehearse", help="rehearse a whole Kaggle training run offline, kills included")
    parser.add_argument("--kill-after", type=float, default=RehearsalOptions.kill_after_s, metavar="SECONDS",
                        help="real seconds before the first training session is killed (0: no kill)")
    parser.add_argument("--type", choices=("Batch", "Interactive"), default="Batch", help="session type")
    parser.add_argument("--accelerator", choices=tuple(ACCELERATOR_SHAPES), default="none",
                        help="simulated accelerator (T4x2 takes the DDP path, on CPU)")
    parser.add_argument("--no-internet", action="store_true",
                        help="training without internet: no mirror, resume from the Batch output")
    parser.add_argument("--deadline-stop", action="store_true",
                        help="let the kit see the session limit and stop cleanly before the kill")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="folder for the rehearsal's files")
    parser.add_argument("--keep", action="store_true", help="leave the workdir for inspection")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic competition")
    parser.add_argument("--workload", default="cmfd", help="the workload to rehearse")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--no-infer", action="store_true", help="stop after training (no inference session)")
    parser.add_argument("--input-layout", choices=("current", "legacy"), default="current",
                        help="where sessions find their inputs: current (/kaggle/input/datasets/<owner>/<slug>, ...) "
                             "or legacy (/kaggle/input/<slug>); Kaggle uses one or the other (default: current)")
    parser.add_argument("--root", default=None, help="project root (default: found from here)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = RehearsalOptions(
        kill_after_s=args.kill_after, run_type=args.type, accelerator=args.accelerator, internet=not args.no_internet,
        workdir=Path(args.workdir), keep=args.keep, deadline_stop=args.deadline_stop, seed=args.seed,
        workload=args.workload, overrides=tuple(args.set or ()), infer=not args.no_infer,
        input_layout=args.input_layout,
    )
    report = rehearse(args.root, options)
    print(format_report(report, load_workload(options.workload).baseline_name))
    if options.keep:
        print(f"kept: {report.workdir}")
    return 0 if report.ok else 1

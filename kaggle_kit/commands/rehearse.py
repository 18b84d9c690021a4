"""``kaggle-kit rehearse``: a whole Kaggle training run of the project, offline, kills included."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_kit.commands.arguments import add_root_argument, project_from
from kaggle_kit.rehearsal import ACCELERATOR_SHAPES, DEFAULT_WORKDIR, RehearsalOptions, format_report, rehearse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rehearse", help="rehearse a whole Kaggle training run of the project offline, kills included",
        description="Rehearse the project's declared training notebook on an offline Kaggle: the first session is "
                    "killed mid-training, the second resumes from the mirrored checkpoint; then the declared "
                    "inference notebook runs with internet off. Needs nothing from your Kaggle account: the "
                    "caller's Kaggle variables and proxies are set aside.")
    parser.add_argument("--kill-after", type=_kill_after, default=None, metavar="SECONDS|auto",
                        help="real seconds before the first training session is killed (0: no kill), or auto: "
                             "half-way through an uninterrupted reference run's training, then compared with it "
                             "bit for bit (default: the declaration's rehearse.kill-after, else auto)")
    parser.add_argument("--kill-at-step", type=int, default=None, metavar="STEP",
                        help="kill the first training session once its training reaches this optimizer step, the "
                             "same point on any machine (no reference run)")
    parser.add_argument("--type", choices=("Batch", "Interactive"), default="Batch", help="session type")
    parser.add_argument("--accelerator", choices=tuple(ACCELERATOR_SHAPES), default="none",
                        help="simulated accelerator (T4x2 takes the DDP path, on CPU)")
    parser.add_argument("--no-internet", action="store_true",
                        help="training without internet: no mirror, resume from the Batch output")
    parser.add_argument("--deadline-stop", action="store_true",
                        help="let the kit see the session limit and stop cleanly before the kill")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="folder for the rehearsal's files")
    parser.add_argument("--keep", action="store_true", help="leave the workdir for inspection")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--notebook", help="the training notebook (default: the declared rehearse.notebook)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--no-infer", action="store_true", help="stop after training (no inference session)")
    parser.add_argument("--input-layout", choices=("current", "legacy"), default="current",
                        help="where sessions find their inputs: current (/kaggle/input/datasets/<owner>/<slug>, ...) "
                             "or legacy (/kaggle/input/<slug>); Kaggle uses one or the other (default: current)")
    parser.add_argument("--checkpoint-every", type=float, default=RehearsalOptions.checkpoint_every_s,
                        metavar="SECONDS", help="checkpoint cadence inside the sessions")
    add_root_argument(parser)
    parser.set_defaults(func=run)


def _kill_after(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write auto or a number of seconds") from None


def run(args: argparse.Namespace) -> int:
    options = RehearsalOptions(
        kill_after_s=args.kill_after, kill_at_step=args.kill_at_step, run_type=args.type,
        accelerator=args.accelerator, internet=not args.no_internet,
        workdir=Path(args.workdir), keep=args.keep, deadline_stop=args.deadline_stop, seed=args.seed,
        notebook=args.notebook, overrides=tuple(args.set or ()), infer=not args.no_infer,
        checkpoint_every_s=args.checkpoint_every, input_layout=args.input_layout,
    )
    report = rehearse(project_from(args), options)
    print(format_report(report))
    if options.keep:
        print(f"kept: {report.workdir}")
    return 0 if report.ok else 1

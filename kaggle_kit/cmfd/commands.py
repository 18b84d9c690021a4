"""``kaggle-kit cmfd ...``: score a submission, write a synthetic competition.

A plugin of the ``kaggle_kit.commands`` entry-point group: the generic command line never imports this package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# The workload's extra, imported here so that without it `kaggle-kit --help` lists these commands with the install
# hint; the modules that use it load when a command runs.
import scipy  # noqa: F401

__all__ = ["register", "run"]


def _score(args: argparse.Namespace) -> int:
    from kaggle_kit.cmfd.metric import read_solution, read_submission, score_rows

    solution = read_solution(args.solution)
    submission = read_submission(args.submission)
    score = score_rows(solution, submission, source=str(args.submission))
    print(f"scored {len(solution)} images of {args.submission} against {args.solution}")
    print(f"{score:.6f}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from kaggle_kit.cmfd.synthetic import CopyMoveSettings, make_synthetic_competition, solution_path

    if args.n_cases < 1 or args.size < 64:
        args.parser.error("--n-cases must be >= 1 and --size >= 64")
    settings = CopyMoveSettings.easy(align=args.align) if args.easy else CopyMoveSettings()
    try:
        dest = make_synthetic_competition(
            args.dest, n_cases=args.n_cases, size=args.size, seed=args.seed, n_test=args.n_test,
            settings=settings, marking=args.marking, fixed_size=args.fixed_size,
        )
    except FileExistsError as exc:
        args.parser.error(str(exc))
    print(f"competition folder: {dest}")
    print(f"solution (test labels): {solution_path(dest)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cmfd score`` and ``cmfd synth``."""
    cmfd = subparsers.add_parser("cmfd", help="copy-move forgery detection workload")
    sub = cmfd.add_subparsers(dest="cmfd_command", metavar="CMFD_COMMAND", required=True)

    score = sub.add_parser("score", help="score a submission.csv with the competition's metric")
    score.add_argument("--solution", type=Path, required=True, help="CSV with case_id,annotation,shape ([H, W])")
    score.add_argument("--submission", type=Path, required=True, help="CSV with case_id,annotation")

    synth = sub.add_parser("synth", help="write a synthetic competition folder (procedural images, copy-moves)")
    synth.add_argument("dest", type=Path, help="folder to create (its test labels go beside it)")
    synth.add_argument("--n-cases", type=int, default=40, help="training case ids (default 40)")
    synth.add_argument("--n-test", type=int, default=None, help="test images (default n_cases // 4)")
    synth.add_argument("--size", type=int, default=256, help="typical image side in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--marking", choices=("pair", "target", "separate"), default="pair",
                       help="what an instance covers (default pair: source and copy)")
    synth.add_argument("--easy", action="store_true", help="translation only, no degradation")
    synth.add_argument("--align", type=int, default=1, help="with --easy: snap copies to this pixel grid")
    synth.add_argument("--fixed-size", action="store_true", help="every image exactly size x size")
    synth.set_defaults(parser=synth)
    cmfd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return _score(args) if args.cmfd_command == "score" else _synth(args)

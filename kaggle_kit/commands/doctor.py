"""``kaggle-kit doctor``: the environment the kit sees, then the preflight table."""

from __future__ import annotations

import argparse

from kaggle_kit.doctor import environment_report

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="report the environment and run the preflight checks",
                                   description="Report where this runs (Kaggle or not, folders, inputs, GPUs, "
                                               "credentials, API, project root) and the preflight table.")
    parser.add_argument("--plan", choices=("gpu", "cpu", "auto"), default="auto",
                        help="what the run needs: gpu refuses a session without one (default: auto)")
    parser.add_argument("--on-two-gpus", choices=("ddp", "refuse"), default="ddp",
                        help="with two GPUs: train data-parallel (ddp) or refuse (default: ddp)")
    parser.add_argument("--input", action="append", metavar="HANDLE",
                        help="an input the run reads (owner/slug, competition slug, ...); repeatable")
    parser.add_argument("--mirror-dataset", metavar="OWNER/SLUG", help="checkpoint mirror to check for write access")
    parser.add_argument("--ledger", metavar="PATH", help="run ledger for the quota when the API cannot tell")
    parser.add_argument("--offline", action="store_true", help="skip every network check")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The preflight pulls in the guard (and torch): only when the command runs.
    from kaggle_kit.guard.preflight import run_preflight

    items = environment_report(check_network=not args.offline)
    width = max(len(name) for name, _ in items)
    print("Environment")
    for name, value in items:
        print(f"  {name:<{width}}  {value}")
    report = run_preflight(plan=args.plan, on_two_gpus=args.on_two_gpus, inputs=args.input or (),
                           mirror_dataset=args.mirror_dataset, ledger_path=args.ledger,
                           check_network=not args.offline)
    print("\nPreflight")
    print("\n".join(f"  {line}" for line in report.to_text().splitlines()))
    failed = len(report.failed)
    print(f"\n{failed} check(s) failed" if failed else "\nall checks passed or warned")
    return 1 if failed else 0

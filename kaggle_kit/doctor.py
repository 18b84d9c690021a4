"""``kaggle-kit doctor``: where am I, what can I reach, and the preflight table.

It reports whether this is a Kaggle kernel (or the offline sandbox) and which run type, the Kaggle folders, the
attached inputs by layout, the GPUs, whether credentials are present (their source, never their values), whether the
API answers; then the preflight table, whose first row is the project root with the reason it was chosen.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kaggle_kit.errors import KaggleKitError

__all__ = ["environment_report", "add_commands"]


def _folder_state(path: Path) -> str:
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "not a folder"
    return "writable" if os.access(path, os.W_OK) else "read-only"


def environment_report(*, check_network: bool = True) -> list[tuple[str, str]]:
    """The environment part of the doctor's output, as (item, finding) pairs."""
    from kaggle_kit import env
    from kaggle_kit.guard.accelerator import detect_accelerator
    from kaggle_kit.guard.preflight import api_base_url, check_internet
    from kaggle_kit.kaggle_api import find_credentials

    items: list[tuple[str, str]] = []
    inside = env.in_kaggle()
    items.append(("inside Kaggle", "yes" if inside else "no"))
    items.append(("run type", env.run_type() or "n/a (not a Kaggle kernel)"))
    for name, path in (("kaggle root", env.kaggle_root()), ("input", env.input_dir()),
                       ("working", env.working_dir()), ("temp", env.temp_dir())):
        items.append((f"{name} dir", f"{path} ({_folder_state(path)})"))
    attached = env.attached_inputs()
    if not attached:
        items.append(("attached inputs", "none"))
    for layout in ("current", "legacy"):
        for item in (a for a in attached if a.layout == layout):
            items.append((f"input ({layout})", f"{item.kind or '?'} {item.handle} at {item.path}"))
    try:
        items.append(("GPUs", detect_accelerator().describe()))
    except KaggleKitError as exc:
        items.append(("GPUs", f"error: {exc}"))
    try:
        creds = find_credentials()
    except KaggleKitError as exc:
        creds = None
        items.append(("credentials", f"unreadable: {exc}"))
    else:
        items.append(("credentials", f"present{f' for {creds.username}' if creds and creds.username else ''} "
                      f"(from {creds.source})" if creds else "none found"))
    if not check_network:
        items.append(("API", f"{api_base_url()} (not checked: --offline)"))
    else:
        up, detail = check_internet()
        answer = detail
        if up and creds is not None:
            from kaggle_kit.guard.quota import quota_from_api

            try:
                quota_from_api()
                answer += "; authenticated call answered"
            except KaggleKitError as exc:
                answer += f"; authenticated call failed: {str(exc).splitlines()[0]}"
        items.append(("API", f"{api_base_url()}: {answer}"))
    return items


def _run(args: argparse.Namespace) -> int:
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


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``kaggle-kit doctor``."""
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
    parser.set_defaults(func=_run)

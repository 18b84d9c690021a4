"""``kaggle-kit run``: carry a training run across as many Kaggle sessions as it takes, then infer and submit."""

from __future__ import annotations

import argparse
import time
from typing import Any

from kaggle_kit.commands.arguments import add_render_arguments, project_from, render_options
from kaggle_kit.errors import RunError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="carry a training run across Kaggle sessions until it finishes, then infer and submit",
        description="Push the declared training notebook, follow its session, and when Kaggle stops it (time "
                    "limit, quota, a clean stop) push the next session, which resumes from the mirrored checkpoint; "
                    "repeat until the training loop records that it finished. Stops with the reason when a session "
                    "makes no progress, the notebook raises, the quota left is below the reserve or the session "
                    "budget is spent. Its state lives in kaggle-kit-runs/ in the project: run it again to carry on "
                    "or to re-attach to a session still running.")
    parser.add_argument("notebook", help="the declared training notebook, e.g. train")
    parser.add_argument("--run", dest="run_id", metavar="NAME", help="the run's name (its state file; default: the "
                        "notebook's name); a new name starts a new run")
    parser.add_argument("--max-sessions", type=int, default=10, help="training sessions the run may push in all "
                        "(default 10)")
    parser.add_argument("--quota-reserve", type=float, default=2.0, metavar="HOURS", help="stop before a push when "
                        "less weekly accelerator quota than this is left (default 2)")
    parser.add_argument("--wait-for-quota", action="store_true", help="sleep until the quota refreshes instead of "
                        "stopping")
    parser.add_argument("--session-timeout", type=float, metavar="SECONDS", help="each session's time limit "
                        "(default: Kaggle's)")
    parser.add_argument("--then", choices=("infer",), help="after training, run the inference notebook with the "
                        "final checkpoint attached and validate its submission.csv")
    parser.add_argument("--infer-notebook", metavar="NAME", help="the inference notebook (default: the declared "
                        "rehearse.infer, else infer)")
    parser.add_argument("--submit", action="store_true", help="submit the inference output to the competition "
                        "(implies --then infer) and wait for the public score")
    parser.add_argument("--code-submission", action="store_true", help="submit the inference notebook's version "
                        "(code competitions) instead of uploading the file")
    parser.add_argument("--poll", type=float, default=10.0, metavar="SECONDS", help="the first poll interval; it "
                        "grows while nothing changes (default 10)")
    add_render_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kaggle_kit.runs import RunOptions, carry_run, load_state
    from kaggle_kit.runs.state import run_folder, runs_dir
    from kaggle_kit.runs.summary import format_summary, summarize

    project = project_from(args)
    options = RunOptions(
        run=args.run_id, render=render_options(args), session_timeout_s=args.session_timeout,
        max_sessions=args.max_sessions, quota_reserve_s=args.quota_reserve * 3600.0,
        wait_for_quota=args.wait_for_quota, then_infer=args.then == "infer", infer_notebook=args.infer_notebook,
        submit=args.submit, competition=args.competition, code_submission=args.code_submission, poll_s=args.poll,
        max_poll_s=max(args.poll, 120.0), mirror_every_s=max(args.poll, 60.0),
    )
    started = time.monotonic()
    try:
        outcome = carry_run(project, args.notebook, options)
    except KeyboardInterrupt:
        print("[run] interrupted: a session already pushed keeps running on Kaggle; run the same command again to "
              "re-attach to it")
        raise
    except RunError as exc:
        if not exc.cause:
            raise  # a bad option, a run in use or an unusable state file: the kit's error, exit status 2
        print(f"[run] stopped: {exc}")
        state = load_state(runs_dir(project.root), options.run or args.notebook)
        if state is not None and state.sessions:
            # What the run did so far, as at its end.
            summary = summarize(state, run_folder(runs_dir(project.root), state.run), title="Run summary (stopped)")
            summary.wall_s = time.monotonic() - started
            print(format_summary(summary))
        return 1
    summary = summarize(outcome.state, outcome.folder)
    summary.wall_s = time.monotonic() - started
    _account(summary, outcome)
    summary.inferred = outcome.submission is not None
    summary.submission_valid = outcome.submission is not None
    text = format_summary(summary)
    (outcome.folder / "summary.txt").write_text(text + "\n")
    print(text)
    return 0


def _account(summary: Any, outcome: Any) -> None:
    """The checkpoint dataset's versions and the weekly GPU quota, for the summary (left out when unreadable)."""
    from kaggle_kit.errors import KaggleKitError
    from kaggle_kit.kaggle_api import make_api
    from kaggle_kit.runs.evidence import mirror_step

    api = make_api()
    if outcome.checkpoint_dataset:
        try:
            summary.dataset_versions[outcome.checkpoint_dataset] = mirror_step(api, outcome.checkpoint_dataset)[1]
        except KaggleKitError:
            pass
    try:
        quota = api.quota_view().gpu_quota
    except Exception:  # noqa: BLE001 - a summary line, not a failure
        return
    if quota is not None:
        summary.gpu_quota_used_h = quota.time_used.total_seconds() / 3600
        summary.gpu_quota_total_h = quota.total_time_allowed.total_seconds() / 3600

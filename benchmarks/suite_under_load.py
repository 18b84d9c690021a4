"""The whole test suite, as the README runs it, with CPU-burning processes alongside: its time and its result.

Starts ``--burners`` busy-loop processes (2 by default: on the project's 2-core machine every core is taken), runs
the README's test command (``.venv/bin/python -m pytest -q``, the same as ``make test``) ``--runs`` times in a row,
stops the burners, and prints one line per run (exit status, pytest's summary, wall time, load average before and
after) and whether every run passed. ``--burners 0`` gives the idle figure. The suite's output goes to
``--log-dir`` (one file per run), so a failure can be read afterwards.

Run: ``.venv/bin/python benchmarks/suite_under_load.py [--burners 2] [--runs 3] [--log-dir DIR] [-- PYTEST_ARGS...]``
(arguments after ``--`` go to pytest, e.g. ``-- tests/test_sim_sandbox.py`` to try it on one module).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|error|errors|skipped).*?)\s*=*$")


@dataclass(frozen=True)
class SuiteRun:
    """One run of the suite."""

    exit_status: int
    summary: str
    wall_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    log: str


def _burner() -> subprocess.Popen[bytes]:
    """A process that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True:\n    pass"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _summary(output: str) -> str:
    """pytest's last summary line (``12 passed, 1 skipped in 3.21s``), or the last line when there is none."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        found = _SUMMARY.match(line)
        if found:
            return found.group(1)
    return lines[-1] if lines else "(no output)"


def run_suite(pytest_args: list[str], log: Path) -> SuiteRun:
    """Run the README's test command once, from the repository root, its output into ``log``."""
    command = [sys.executable, "-m", "pytest", "-q", *pytest_args]
    load_before = os.getloadavg()
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    wall_s = time.monotonic() - start
    load_after = os.getloadavg()
    return SuiteRun(exit_status=done.returncode, summary=_summary(log.read_text(encoding="utf-8", errors="replace")),
                    wall_s=wall_s, load_before=load_before, load_after=load_after, log=str(log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burners", type=int, default=2, help="busy-loop processes alongside (0: idle figure)")
    parser.add_argument("--runs", type=int, default=1, help="runs in a row (the issue asks for 3 under load)")
    parser.add_argument("--log-dir", type=Path, default=None, help="where each run's output goes")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args(argv)
    if args.burners < 0 or args.runs < 1:
        parser.error("--burners must be 0 or more and --runs at least 1")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kaggle-kit-suite-"))
    log_dir.mkdir(parents=True, exist_ok=True)

    print(f"{os.cpu_count()} cores, {args.burners} busy-loop process(es) alongside, {args.runs} run(s); "
          f"command: python -m pytest -q {' '.join(args.pytest_args)}".rstrip(), flush=True)
    burners = [_burner() for _ in range(args.burners)]
    runs: list[SuiteRun] = []
    try:
        for number in range(1, args.runs + 1):
            run = run_suite(args.pytest_args, log_dir / f"run-{number}.log")
            runs.append(run)
            load = " / ".join(f"{a:.1f}" for a in run.load_before) + " -> " + " / ".join(
                f"{a:.1f}" for a in run.load_after)
            print(f"run {number}: exit {run.exit_status}, {run.summary}, {run.wall_s:.0f} s wall "
                  f"(load average 1/5/15 min: {load}); output: {run.log}", flush=True)
    finally:
        for burner in burners:
            burner.send_signal(signal.SIGKILL)
            burner.wait()
    passed = all(run.exit_status == 0 for run in runs)
    print(f"{'all' if passed else 'NOT all'} {len(runs)} run(s) passed; wall times: "
          f"{', '.join(f'{run.wall_s:.0f} s' for run in runs)}")
    if args.json is not None:
        args.json.write_text(json.dumps({"cores": os.cpu_count(), "burners": args.burners,
                                         "runs": [asdict(run) for run in runs]}, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""The end of a run: the summary table (sessions, steps, work lost at each stop, dataset versions, the score against
the trivial baseline, the submission) and the training curve across sessions, drawn from the sessions' history
files with each session in its own colour."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit.runs.evidence import newest_checkpoint, read_session_files, weights_digest
from kaggle_kit.runs.state import RunState

__all__ = ["CURVE_FILE", "RunSummary", "SessionRow", "format_summary", "outcome_lines", "plot_sessions",
           "session_table", "summarize"]

CURVE_FILE = "training_curve.png"


@dataclass
class SessionRow:
    """One session as the summary shows it."""

    name: str
    status: str
    wall_s: float = 0.0
    steps: int | None = None
    step_end: int | None = None
    lost_steps: int | None = None
    lost_minutes: float | None = None
    resumed_from: int | None = None
    seconds_per_step: float | None = None
    note: str = ""
    session_s: float | None = None
    training_bounds: tuple[float, float] | None = None
    output: Path | None = None


@dataclass
class RunSummary:
    """What a run (or a rehearsal) did, as the summary prints it."""

    title: str = "Run summary"
    sessions: list[SessionRow] = field(default_factory=list)
    dataset_versions: dict[str, int] = field(default_factory=dict)
    final_score: float | None = None
    submission_score: float | None = None
    baseline_score: float | None = None
    baseline_name: str = "trivial"
    inferred: bool = True
    submission_valid: bool = False
    submission_problem: str = ""
    submitted: str | None = None  # "competition: public score S" once submitted
    gpu_quota_used_h: float | None = None
    gpu_quota_total_h: float | None = None
    weights_sha256: str | None = None
    reference_sha256: str | None = None
    model_shapes: dict[str, list[int]] = field(default_factory=dict)
    curve: Path | None = None
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def bit_identical(self) -> bool | None:
        """Whether the run ended with the uninterrupted reference run's weights (None: no reference)."""
        if self.reference_sha256 is None or self.weights_sha256 is None:
            return None
        return self.reference_sha256 == self.weights_sha256


def account_losses(rows: list[SessionRow]) -> None:
    """Work lost at each stop: the steps between where a session ended and where the next one resumed."""
    for stopped, after in zip(rows, rows[1:]):
        if stopped.status not in ("KILLED", "CANCEL_ACKNOWLEDGED", "ERROR") or stopped.step_end is None:
            continue
        stopped.lost_steps = max(0, int(stopped.step_end) - int(after.resumed_from or 0))
        if stopped.seconds_per_step is not None:
            stopped.lost_minutes = stopped.lost_steps * stopped.seconds_per_step / 60.0


def summarize(state: RunState, folder: Path, *, title: str = "Run summary") -> RunSummary:
    """The summary of a run from its state and the sessions' downloaded outputs in ``folder``; draws the curve."""
    summary = RunSummary(title=title)
    training = state.training_sessions()
    for session in state.sessions:
        out = folder / session.output if session.output else None
        files = read_session_files(out) if out is not None and out.is_dir() else None
        status = "KILLED" if session.status == "CANCEL_ACKNOWLEDGED" else (session.status or "-")
        row = SessionRow(name=f"{session.notebook} #{session.index} (v{session.version})", status=status,
                         wall_s=(session.ended_at or session.pushed_at) - session.pushed_at if session.pushed_at else 0,
                         step_end=session.step, resumed_from=session.resumed_from,
                         seconds_per_step=session.seconds_per_step, note=session.reason, output=out)
        if files is not None and files.steps is not None:
            row.steps = files.steps
        summary.sessions.append(row)
    account_losses([r for r, s in zip(summary.sessions, state.sessions) if s in training])
    last = next((folder / s.output for s in reversed(training) if s.output), None)
    if last is not None:
        files = read_session_files(last)
        if files.best is not None and files.monitor and files.best.get(files.monitor) is not None:
            summary.final_score = float(files.best[files.monitor])
        checkpoint = newest_checkpoint(last)
        if checkpoint is not None:
            summary.weights_sha256, summary.model_shapes = weights_digest(checkpoint)
    summary.curve = plot_sessions([folder / s.output for s in training if s.output], folder / CURVE_FILE)
    submission = state.submission or {}
    if submission.get("status") == "COMPLETE":
        summary.submitted = f"{submission['competition']}: public score {submission['score']}"
    return summary


def plot_sessions(outputs: list[Path], path: Path) -> Path | None:
    """The loss and score per epoch across sessions, each epoch coloured by the session that trained it; None
    when no session left a history."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    seen: dict[int, tuple[int, dict[str, Any]]] = {}
    for index, out in enumerate(outputs, start=1):
        for record in read_session_files(out).history if out.is_dir() else ():
            epoch = record.get("epoch")
            if isinstance(epoch, int) and epoch not in seen:
                seen[epoch] = (index, record)
    if not seen:
        return None
    epochs = sorted(seen)
    metrics = sorted({k for _, r in seen.values() for k in r if k.startswith("val_")})
    figure = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 1 + bool(metrics), squeeze=False)[0]
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for series, ax in zip(["train_loss", *metrics[:1]], axes):
        for session in sorted({s for s, _ in seen.values()}):
            xs = [e for e in epochs if seen[e][0] == session and isinstance(seen[e][1].get(series), (int, float))]
            ys = [float(seen[e][1][series]) for e in xs]
            ys = [y if math.isfinite(y) else float("nan") for y in ys]
            ax.plot(xs, ys, "o-", color=colours[(session - 1) % len(colours)], label=f"session {session}")
        ax.set_xlabel("epoch")
        ax.set_title(series)
        ax.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def session_table(sessions: Sequence[SessionRow], *, lost_header: str = "lost at stop") -> list[str]:
    """The sessions as a table: status, wall time, steps, the step reached and the work lost at a stop."""
    header = f"{'session':<30} {'status':<10} {'wall':>7} {'steps':>6} {'at step':>8} {lost_header:>22}"
    lines = [header, "-" * len(header)]
    for s in sessions:
        lost = "-"
        if s.lost_steps is not None:
            minutes = f"{s.lost_minutes:.2f} min" if s.lost_minutes is not None else "? min"
            lost = f"{s.lost_steps} steps, {minutes}"
        lines.append(f"{s.name:<30} {s.status:<10} {s.wall_s:>6.0f}s {str(s.steps if s.steps is not None else '-'):>6}"
                     f" {str(s.step_end if s.step_end is not None else '-'):>8} {lost:>22}")
    return lines


def outcome_lines(result: Any, *, not_inferred: str) -> list[str]:
    """What a run or a rehearsal ended with: dataset versions, scores, the submission, quota, final weights and
    whether they equal the uninterrupted reference run's, the model's size.

    ``result`` is a :class:`RunSummary` or a rehearsal's report (the same fields)."""
    lines = [f"checkpoint dataset {ref}: {number} version(s)" for ref, number in result.dataset_versions.items()]
    if result.final_score is not None:
        lines.append(f"final validation score: {result.final_score:.4f} "
                     + (f"(baseline, predicting {result.baseline_name}: {result.baseline_score:.4f})"
                        if result.baseline_score is not None else ""))
    if not result.inferred:
        lines.append(not_inferred)
    elif result.submission_valid and result.submission_score is not None:
        baseline = f" (baseline {result.baseline_score:.4f})" if result.baseline_score is not None else ""
        lines.append(f"submission: valid, test score {result.submission_score:.4f}{baseline}")
    elif result.submission_valid:
        lines.append("submission: written, not scored")
    else:
        lines.append(f"submission: NOT valid: {result.submission_problem}")
    if result.gpu_quota_used_h is not None:
        lines.append(f"weekly GPU quota (kaggle quota): {result.gpu_quota_used_h:.3f} h used of "
                     f"{result.gpu_quota_total_h:.0f} h")
    if result.weights_sha256:
        lines.append(f"final weights sha256: {result.weights_sha256}")
    if result.bit_identical is not None:
        lines.append("resumed run bit-identical to the uninterrupted reference run: "
                     + ("yes" if result.bit_identical else f"NO (reference {result.reference_sha256})"))
    if result.model_shapes:
        lines.append(f"model tensors: {len(result.model_shapes)}, "
                     f"{sum(math.prod(s) for s in result.model_shapes.values())} values")
    return lines


def format_summary(summary: RunSummary) -> str:
    """The summary table and its lines."""
    lines = ["", summary.title, "", *session_table(summary.sessions), ""]
    lines += outcome_lines(summary, not_inferred="submission: not made (no inference notebook run)")
    if summary.submitted:
        lines.append(f"submitted to {summary.submitted}")
    if summary.curve is not None:
        lines.append(f"training curve across sessions: {summary.curve}")
    lines += [f"note: {note}" for note in summary.notes]
    lines.append(f"wall time: {summary.wall_s:.0f} s")
    return "\n".join(lines)

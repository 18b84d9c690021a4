"""The preflight report: one table, at the top of the training notebook and in ``kaggle-kit doctor``, that catches the
wrong accelerator, missing data, no internet or credentials, an unwritable mirror, a run that will not fit and a
batch that will not fit memory before the first step, and says for every failing row what to do.

Credentials are reported as present or absent with where they came from, never with their values.
"""

from __future__ import annotations

import html
import os
import socket
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlparse

from kaggle_kit.errors import HandleError, KaggleKitError, PreflightError
from kaggle_kit.guard.accelerator import AcceleratorInfo, DevicePlan, detect_accelerator, plan_devices
from kaggle_kit.guard.fit import FitVerdict
from kaggle_kit.guard.memory import BatchSizeResult
from kaggle_kit.guard.quota import QuotaStatus, burn_rate, current_quota
from kaggle_kit.handles import parse_dataset

STATUSES = ("ok", "warn", "fail")
_KAGGLE_HOST = "https://www.kaggle.com"
_INTERNET_FIX = ("turn Settings > Internet on in the notebook editor (kernel-metadata.json: \"enable_internet\": true; "
                 "the account needs a verified phone number)")

__all__ = ["PreflightRow", "PreflightReport", "run_preflight", "check_internet", "api_base_url"]


@dataclass(frozen=True)
class PreflightRow:
    """One check: its name, ``ok``/``warn``/``fail``, what was found, and what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class PreflightReport:
    """The preflight table, plus what the accelerator check decided (for the training code to use)."""

    rows: list[PreflightRow] = field(default_factory=list)
    accelerator: AcceleratorInfo | None = None
    device_plan: DevicePlan | None = None

    @property
    def failed(self) -> list[PreflightRow]:
        return [row for row in self.rows if row.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def row(self, name: str) -> PreflightRow:
        return next(r for r in self.rows if r.name == name)

    def to_text(self) -> str:
        width = max((len(r.name) for r in self.rows), default=4)
        lines = []
        for r in self.rows:
            lines.append(f"{r.status.upper():<4}  {r.name:<{width}}  {r.detail}")
            if r.fix and r.status != "ok":
                lines.append(f"{'':<4}  {'':<{width}}  -> {r.fix}")
        return "\n".join(lines)

    def to_html(self) -> str:
        colour = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e"}
        body = "".join(
            f"<tr><td style='color:{colour[r.status]};font-weight:bold'>{r.status.upper()}</td>"
            f"<td>{html.escape(r.name)}</td><td>{html.escape(r.detail)}</td>"
            f"<td>{html.escape(r.fix) if r.status != 'ok' else ''}</td></tr>"
            for r in self.rows)
        return ("<table><thead><tr><th>status</th><th>check</th><th>found</th><th>what to do</th></tr></thead>"
                f"<tbody>{body}</tbody></table>")

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        return self.to_text()

    def display(self) -> None:
        """Show the table: as HTML inside a notebook kernel, as text elsewhere (a terminal, a Batch log)."""
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:
            print(self.to_text())
            return
        shell = get_ipython()
        if shell is not None and getattr(shell, "kernel", None) is not None:
            display(HTML(self.to_html()))
        else:
            print(self.to_text())

    def raise_if_failed(self, override: bool = False) -> None:
        """Stop the run when a row failed, unless ``override`` (then the failures are printed and the run goes on).

        Raises:
            PreflightError: listing every failing row and its fix.
        """
        if self.ok:
            return
        listing = "\n".join(f"  {r.name}: {r.detail}\n    -> {r.fix}" for r in self.failed)
        if override:
            print(f"kaggle-kit: preflight failed but was overridden; going on:\n{listing}", file=sys.stderr)
            return
        raise PreflightError(f"preflight failed, so the run was not started:\n{listing}\n"
                             "Fix these, or pass override=True to run anyway.")


def api_base_url() -> str:
    """The Kaggle API this process talks to: ``KAGGLE_KIT_API_ENDPOINT`` (the stand-in), else kaggle.com."""
    from kaggle_kit.kaggle_api import ENDPOINT_ENV

    return os.environ.get(ENDPOINT_ENV) or _KAGGLE_HOST


def check_internet(url: str | None = None, *, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether a TCP connection to the API's host opens within ``timeout_s``; and what happened."""
    target = urlparse(url or api_base_url())
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, f"{host}:{port} reachable"
    except OSError as exc:
        return False, f"{host}:{port} unreachable ({exc.__class__.__name__}: {exc})"


def _guarded(name: str, check: Callable[[], PreflightRow]) -> PreflightRow:
    try:
        return check()
    except KaggleKitError as exc:
        message = str(exc)
        # Kit messages read "what was wrong: why. What to do": the first sentence is the finding, the rest the fix.
        head, sep, rest = message.partition(". ")
        return PreflightRow(name, "fail", head.splitlines()[0], rest if sep and rest else message)


def _root_row() -> PreflightRow:
    from kaggle_kit.root import find_root

    root = find_root()
    return PreflightRow("project root", "ok", f"{root.path} ({root.reason})")


def _data_row(inputs: Sequence[str], data_paths: Sequence[str | os.PathLike[str]]) -> PreflightRow:
    from kaggle_kit import env

    found, missing = [], []
    for handle in inputs:
        try:
            found.append(f"{handle} -> {env.find_input(handle)}")
        except KaggleKitError:
            missing.append(handle)
    for path in data_paths:
        (found if Path(path).exists() else missing).append(str(path))
    if not inputs and not data_paths:
        attached = env.attached_inputs()
        detail = f"{len(attached)} input(s) attached under {env.input_dir()}" if attached else "none checked"
        return PreflightRow("data paths", "ok" if attached else "warn", detail,
                            "pass the inputs the run reads, so a missing one stops it here")
    if missing:
        return PreflightRow("data paths", "fail", f"missing: {', '.join(missing)}",
                            "attach the missing input (Add Input in the editor, or the *_sources fields of "
                            "kernel-metadata.json) or correct the path in the config")
    return PreflightRow("data paths", "ok", "; ".join(found))


def _internet_row(required: bool, check_network: bool) -> PreflightRow:
    if not check_network:
        return PreflightRow("internet", "warn", "not checked", "run the preflight with check_network=True")
    up, detail = check_internet()
    if up:
        return PreflightRow("internet", "ok", detail)
    return PreflightRow("internet", "fail" if required else "warn", detail,
                        _INTERNET_FIX + ("" if required else "; needed only for mirroring and the quota API"))


def _credentials_row(required: bool) -> tuple[PreflightRow, Any]:
    from kaggle_kit.kaggle_api import find_credentials

    creds = find_credentials()
    if creds is None:
        return PreflightRow(
            "credentials", "fail" if required else "warn", "none found",
            "add Kaggle Secrets labelled KAGGLE_USERNAME and KAGGLE_KEY (Add-ons > Secrets, attached to this "
            "notebook) or set KAGGLE_USERNAME/KAGGLE_KEY"), None
    who = f" for {creds.username}" if creds.username else ""
    return PreflightRow("credentials", "ok", f"present{who} (from {creds.source})"), creds


def _mirror_row(dataset: str, creds: Any, online: bool) -> PreflightRow:
    name = "mirror dataset"
    try:
        parse_dataset(dataset, what="mirror dataset", versioned=False)
    except HandleError as exc:
        return PreflightRow(name, "fail", str(exc), "name the mirror dataset as owner/slug the way Kaggle allows")
    owner = dataset.split("/")[0]
    if creds is None or not online:
        return PreflightRow(name, "fail", f"{dataset}: cannot be reached without "
                            f"{'credentials' if creds is None else 'internet'}",
                            "fix the credentials and internet rows above")
    from kaggle_kit.kaggle_api import make_api

    api = make_api(creds)
    username = api.config_values.get(api.CONFIG_NAME_USER)
    try:
        status = api.dataset_status(dataset)
    except Exception as exc:  # the client raises requests' HTTPError; other failures mean unreachable too
        code = getattr(getattr(exc, "response", None), "status_code", None)
        if code == 404 and owner == username:
            return PreflightRow(name, "ok", f"{dataset} does not exist yet; the first mirrored checkpoint creates it")
        if code in (401, 403, 404):
            return PreflightRow(name, "fail", f"{dataset}: HTTP {code} for user {username}",
                                f"use a dataset you own (e.g. {username}/<slug>) or ask {owner} to add {username} "
                                "as a collaborator with edit rights")
        return PreflightRow(name, "fail", f"{dataset}: API unreachable ({exc.__class__.__name__})",
                            "check the internet row; retry in a minute if Kaggle is down")
    if owner != username:
        return PreflightRow(name, "warn", f"{dataset} is reachable ({status}) but owned by {owner}, not {username}",
                            f"new versions need edit rights: mirror to {username}/<slug> instead")
    return PreflightRow(name, "ok", f"{dataset} reachable ({status}) and owned by {username}")


def _quota_row(quota: QuotaStatus | None, fit: FitVerdict | None, accelerator: str,
               burn_rates: Mapping[str, float] | None) -> PreflightRow:
    name = "quota vs estimate"
    rate = burn_rate(accelerator, burn_rates)
    rate_note = f"; {accelerator} burns {rate:g}x (unverified)" if rate not in (0.0, 1.0) else ""
    if rate == 0.0:
        quota_part = "no GPU quota used on this accelerator"
    elif quota is None:
        return PreflightRow(name, "warn", "quota unknown" + rate_note,
                            "give credentials with internet, or the run ledger and the quota shown on kaggle.com")
    elif quota.left_s <= 0:
        return PreflightRow(name, "fail", f"GPU quota used up: {quota.describe()}",
                            "wait for the weekly refresh, or run on the CPU (Accelerator > None)")
    else:
        quota_part = quota.describe()
    if fit is None:
        return PreflightRow(name, "ok" if rate == 0.0 or quota is not None else "warn",
                            quota_part + rate_note + "; run not estimated",
                            "time a few steps with kaggle_kit.guard.fit.check_fit")
    detail = f"{quota_part}{rate_note}; {fit.describe()}"
    if fit.fits:
        return PreflightRow(name, "ok", detail)
    return PreflightRow(name, "warn", detail, " or ".join(fit.options))


def _memory_row(memory: BatchSizeResult | None) -> PreflightRow:
    if memory is None:
        return PreflightRow("memory test", "warn", "not run",
                            "run kaggle_kit.guard.memory.find_batch_size with the planned batch and input size")
    if memory.fits_planned:
        return PreflightRow("memory test", "ok", memory.describe())
    return PreflightRow("memory test", "warn", memory.describe(),
                        f"set the batch to {memory.batch_size} with {memory.accumulation_steps} accumulation step(s), "
                        "or enable AMP")


def _versions_row() -> PreflightRow:
    parts, missing = [], []
    for dist in ("torch", "timm", "kaggle", "kaggle-kit"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            missing.append(dist)
    try:
        import torch

        parts.append(f"CUDA build {torch.version.cuda or 'none'}")
    except ImportError:
        pass
    if missing:
        return PreflightRow("versions", "warn", ", ".join(parts) + f"; missing: {', '.join(missing)}",
                            f"pip install {' '.join(missing)} (from an attached wheel dataset when internet is off)")
    return PreflightRow("versions", "ok", ", ".join(parts))


def _compat_row() -> PreflightRow:
    from kaggle_kit.guard.compat import compat_notes

    notes = compat_notes()
    return PreflightRow("compatibility", "ok", "; ".join(notes) if notes else "nothing to note")


def run_preflight(*, plan: str = "gpu", on_two_gpus: str = "ddp", inputs: Sequence[str] = (),
                  data_paths: Sequence[str | os.PathLike[str]] = (), mirror_dataset: str | None = None,
                  internet_required: bool | None = None, quota: QuotaStatus | None = None,
                  ledger_path: str | os.PathLike[str] | None = None, fit: FitVerdict | None = None,
                  memory: BatchSizeResult | None = None, burn_rates: Mapping[str, float] | None = None,
                  check_network: bool = True) -> PreflightReport:
    """Run every preflight check and collect the table; nothing here raises for a user's mistake.

    Args:
        plan: ``"gpu"``, ``"cpu"`` or ``"auto"`` (see :func:`plan_devices`).
        on_two_gpus: ``"ddp"`` or ``"refuse"``.
        inputs: Handles of attached inputs the run reads (``owner/slug``, a competition slug, ...).
        data_paths: Files or folders the run reads.
        mirror_dataset: ``owner/slug`` of the checkpoint mirror; checked for reach and write rights.
        internet_required: Whether a missing internet fails the run; default: when mirroring.
        quota: The GPU quota; default :func:`current_quota` (sandbox, API, then ``ledger_path``).
        ledger_path: The run ledger, for the quota when the API cannot tell.
        fit: A :class:`FitVerdict` from :func:`kaggle_kit.guard.fit.check_fit`.
        memory: A :class:`BatchSizeResult` from :func:`kaggle_kit.guard.memory.find_batch_size`.
        burn_rates: Quota seconds per wall second by accelerator, overriding the (unverified) defaults.
        check_network: Set False to skip every network check (internet, mirror, quota API).
    """
    report = PreflightReport()
    mirroring = mirror_dataset is not None
    required = mirroring if internet_required is None else internet_required
    report.rows.append(_guarded("project root", _root_row))
    report.rows.append(_guarded("data paths", lambda: _data_row(inputs, data_paths)))

    def accelerator_row() -> PreflightRow:
        report.accelerator = detect_accelerator()
        report.device_plan = plan_devices(plan, report.accelerator, on_two_gpus=on_two_gpus)
        detail = (f"{report.accelerator.describe()}; plan {plan}: {report.device_plan.world_size} process(es), "
                  f"{report.device_plan.device_type}/{report.device_plan.backend}")
        return PreflightRow("accelerator vs plan", "ok", "; ".join((detail, *report.device_plan.notes)))

    report.rows.append(_guarded("accelerator vs plan", accelerator_row))
    internet = _guarded("internet", lambda: _internet_row(required, check_network))
    report.rows.append(internet)
    creds_holder: list[Any] = [None]

    def credentials_row() -> PreflightRow:
        row, creds_holder[0] = _credentials_row(mirroring)
        return row

    report.rows.append(_guarded("credentials", credentials_row))
    if mirror_dataset is not None:
        if check_network:
            report.rows.append(_guarded("mirror dataset", lambda: _mirror_row(
                mirror_dataset, creds_holder[0], internet.status == "ok")))
        else:
            report.rows.append(PreflightRow("mirror dataset", "warn", f"{mirror_dataset}: not checked",
                                            "run the preflight with check_network=True"))
    accelerator = report.accelerator.kind if report.accelerator is not None else "none"

    def quota_row() -> PreflightRow:
        status = quota if quota is not None else current_quota(
            ledger_path=ledger_path, burn_rates=burn_rates, use_api=check_network and internet.status == "ok")
        return _quota_row(status, fit, accelerator, burn_rates)

    report.rows.append(_guarded("quota vs estimate", quota_row))
    report.rows.append(_memory_row(memory))
    report.rows.append(_versions_row())
    report.rows.append(_compat_row())
    return report

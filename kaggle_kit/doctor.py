"""What ``kaggle-kit doctor`` reports: where am I, what can I reach, and the preflight table.

It reports whether this is a Kaggle kernel (or the offline sandbox) and which run type, the Kaggle folders, the
attached inputs by layout, the GPUs, whether credentials are present (their source, never their values), whether the
API answers; then the preflight table, whose first row is the project root with the reason it was chosen.
"""

from __future__ import annotations

import os
from pathlib import Path

from kaggle_kit.errors import KaggleKitError

__all__ = ["environment_report"]


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

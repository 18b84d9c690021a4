"""Python child processes that import the kit, finding it where their parent found it.

On Kaggle the kit is an attached dataset that the notebook put on ``sys.path``. A child started as
``python -m kaggle_kit...`` inherits the environment but not ``sys.path``, so it is told where the kit is through
``PYTHONPATH``. (``multiprocessing``'s spawn, which DDP ranks use, hands ``sys.path`` over by itself.)
"""

from __future__ import annotations

import os
import site
from collections.abc import Mapping
from pathlib import Path

__all__ = ["kit_python_env"]

_KIT_FOLDER = Path(__file__).resolve().parents[1]  # the sys.path entry that holds the kaggle_kit package


def kit_python_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) with the folder holding the kit first on ``PYTHONPATH``.

    An installed kit (in a site-packages folder) needs nothing: the child's interpreter finds it there itself.
    """
    env = dict(os.environ if base is None else base)
    folder = str(_KIT_FOLDER)
    installed = {os.path.realpath(p) for p in (*site.getsitepackages(), site.getusersitepackages())}
    if folder in installed:
        return env
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    env["PYTHONPATH"] = os.pathsep.join([folder, *parts])
    return env

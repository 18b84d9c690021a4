"""Hot reload of the project's modules in a notebook: ``git pull``, re-run the cell, the new code runs.

``reload()`` reloads the project modules whose source changed; ``enable_autoreload()`` (or
``%load_ext kaggle_kit.hotreload``) does it before every cell, ``disable_autoreload()`` (or ``%unload_ext``) stops
that. ``add_root(path)`` watches another folder besides the project root. The machinery: ``scan`` (source analysis),
``patch`` (old objects take the new code), ``apply`` (a module's new source, all or nothing), ``reloader`` (tracking
and ordering).
"""

from __future__ import annotations

from kaggle_kit.hotreload.reloader import (
    ReloadReport,
    add_root,
    disable_autoreload,
    enable_autoreload,
    load_ipython_extension,
    reload,
    unload_ipython_extension,
)

__all__ = ["ReloadReport", "add_root", "disable_autoreload", "enable_autoreload", "load_ipython_extension", "reload",
           "unload_ipython_extension"]

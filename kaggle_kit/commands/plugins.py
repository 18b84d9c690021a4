"""Workload commands from the ``kaggle_kit.commands`` entry-point group, loaded so that a plugin that fails breaks
only itself.

An entry point names a module with ``register(subparsers)`` (or the function itself). A plugin whose import fails for
a module missing outside its own package (an optional dependency: the CMFD workload installed without its extra) is
listed in ``--help`` with the install hint, and running it says what to install. Any other failure (an import error
inside the plugin, a crash in ``register``, a command name already taken) is listed with a one-line notice, and
running it is a :class:`PluginError` naming the plugin and its entry point. The other commands work either way.
"""

from __future__ import annotations

import argparse
import functools
import re
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from kaggle_kit.errors import PluginError

__all__ = ["GROUP", "UnavailablePlugin", "install_hint", "plugin_entry_points", "register_plugins"]

GROUP = "kaggle_kit.commands"
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class UnavailablePlugin:
    """A plugin that could not register its commands.

    Attributes:
        name: The entry point's name, which stands in for its commands.
        summary: One line for ``--help``.
        message: The error running it gives.
    """

    name: str
    summary: str
    message: str


def plugin_entry_points() -> list[EntryPoint]:
    """The installed command plugins, by name."""
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_hint(entry_point: EntryPoint, missing: str) -> str:
    """The ``pip install`` that brings the module ``missing`` for the distribution that ships ``entry_point``.

    The extra of that distribution that requires a package of the module's name, else its extra named like the
    entry point, else the module's own name.
    """
    top = missing.partition(".")[0]
    dist = entry_point.dist
    if dist is None:
        return f"pip install {top}"
    project = dist.metadata["Name"]
    for requirement in dist.requires or ():
        name = _REQUIREMENT_NAME.match(requirement)
        if name is None or _normalized(name.group(1)) != _normalized(top):
            continue
        extra = _EXTRA_MARKER.search(requirement)
        if extra:
            return f"pip install '{project}[{extra.group(1)}]'"
        return f"pip install '{requirement.partition(';')[0].strip()}'"
    if entry_point.name in (dist.metadata.get_all("Provides-Extra") or ()):
        return f"pip install '{project}[{entry_point.name}]'"
    return f"pip install {top}"


def _where(entry_point: EntryPoint) -> str:
    dist = entry_point.dist
    source = f" of {dist.metadata['Name']}" if dist is not None else ""
    return f"entry point {entry_point.name} = {entry_point.value} in group {GROUP}{source}"


def _location(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _broken(entry_point: EntryPoint, why: str, location: str = "") -> UnavailablePlugin:
    first_line = why.splitlines()[0] if why else "unknown error"
    return UnavailablePlugin(
        entry_point.name,
        summary=f"plugin failed to load ({entry_point.value}): {first_line}",
        message=f"the plugin {entry_point.name!r} ({_where(entry_point)}) failed to load: {why}{location}. Fix or "
                "reinstall the package that provides it, or uninstall it; the other commands are not affected",
    )


def _failure(entry_point: EntryPoint, exc: BaseException) -> UnavailablePlugin:
    return _broken(entry_point, f"{type(exc).__name__}: {exc}", _location(exc))


def _load(entry_point: EntryPoint, subparsers: argparse._SubParsersAction) -> UnavailablePlugin | None:
    """Register one plugin's commands; what went wrong, or None."""
    try:
        target = entry_point.load()
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and missing.partition(".")[0] != entry_point.module.partition(".")[0]:
            hint = install_hint(entry_point, missing)
            top = missing.partition(".")[0]
            return UnavailablePlugin(
                entry_point.name,
                summary=f"unavailable: needs {top}, which is not installed; {hint}",
                message=f"the {entry_point.name} commands need {top}, which is not installed: {hint}",
            )
        return _failure(entry_point, exc)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin must not break the other commands
        return _failure(entry_point, exc)
    register = getattr(target, "register", target)
    if not callable(register):
        return _broken(entry_point, f"{entry_point.value} has no register(subparsers) function")
    try:
        # A dry run on a parser of its own first, so a failure leaves no half-registered command behind.
        probe = argparse.ArgumentParser(prog="kaggle-kit").add_subparsers()
        register(probe)
        taken = sorted(probe.choices.keys() & subparsers.choices.keys())
        if taken:
            return _broken(entry_point, f"it registers {', '.join(taken)}, which another command already is")
        register(subparsers)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - as above
        return _failure(entry_point, exc)
    return None


def _refuse(message: str, args: argparse.Namespace) -> int:
    raise PluginError(message)


def register_plugins(subparsers: argparse._SubParsersAction) -> list[str]:
    """Register every plugin's commands; a plugin that fails stands as a command that says why.

    Returns:
        Notices for failed plugins whose name is already a command, so they cannot stand as one (for the epilog).
    """
    notices: list[str] = []
    for entry_point in plugin_entry_points():
        problem = _load(entry_point, subparsers)
        if problem is None:
            continue
        if problem.name in subparsers.choices:
            notices.append(f"notice: {problem.message}")
            continue
        # argparse formats help text with %: an error message may hold one.
        parser = subparsers.add_parser(problem.name, help=problem.summary.replace("%", "%%"), add_help=False,
                                       description=problem.message.replace("%", "%%"))
        parser.set_defaults(func=functools.partial(_refuse, problem.message), unavailable_plugin=problem)
    return notices

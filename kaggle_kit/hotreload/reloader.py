"""The hot reloader: tracks project modules and reloads those whose source changed.

``reload()`` reloads the project modules whose source changed since they were loaded; ``enable_autoreload()`` does
the same before every cell. Project modules are those whose file lies under the project root (``find_root()``: the
project a rendered notebook names, not the kit's own tree), the kit's tree when it is a writable clone, or a root
added with ``add_root``. Built on IPython's autoreload (its ``update_function`` patches functions), with what it
lacks: dependency order, rebinding of ``from x import y`` names, change detection that survives ``git pull``, no
half-applied module on an error, "restart needed" for changes that cannot be applied in place, and a warning when
the project is imported from a stale installed copy.
"""

from __future__ import annotations

import gc
import heapq
import importlib.machinery
import importlib.util
import os
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kaggle_kit.hotreload.apply as apply
import kaggle_kit.hotreload.scan as scan
from kaggle_kit.errors import ReloadError, RootNotFoundError

__all__ = ["ReloadReport", "Reloader", "add_root", "disable_autoreload", "enable_autoreload", "load_ipython_extension",
           "reload", "unload_ipython_extension"]

# The reloader never reloads itself: its own package is left out by name, whatever files it grows.
_OWN_PACKAGE = __name__.rpartition(".")[0]
_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)
_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_ih", "_oh", "_dh"})


@dataclass
class ReloadReport:
    """What one reload did: one line per reloaded module, plus warnings; empty when nothing changed."""

    reloaded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Tracked:
    name: str
    module: types.ModuleType
    path: str
    sig: scan.Signature
    digest: bytes
    source: bytes
    extension: bool
    deleted: bool = False
    failure: tuple[bytes, bool] | None = None  # (digest of the failing source, it was a syntax error)
    failed_source: bytes = b""
    bindings: tuple[bytes, set[tuple[str, str, str]]] | None = None
    imports: tuple[bytes, set[str]] | None = None


class Reloader:
    """Tracks project modules and reloads those whose source changed."""

    def __init__(self, roots: list[Path]) -> None:
        self.shell: Any = None
        self.namespace: dict[str, Any] | None = None  # the notebook namespace when there is no IPython shell
        self._tracked: dict[str, _Tracked] = {}
        self._seen: set[str] = set()
        self._copies: dict[str, scan.InstalledCopy] = {}
        self._history: tuple[int, set[tuple[str, str, str]]] = (0, set())
        self._graph: dict[str, frozenset[str]] = {}
        self._graph_order: dict[str, int] = {}
        self.set_roots(roots)

    @property
    def tracked_modules(self) -> list[str]:
        """The names of the project modules being watched, sorted."""
        return sorted(self._tracked)

    def set_roots(self, roots: list[Path]) -> None:
        """Watch these roots; modules seen before are looked at again."""
        self.roots = roots
        prefixes = {str(r) + os.sep for r in roots} | {os.path.realpath(r) + os.sep for r in roots}
        self._prefixes = tuple(prefixes)
        # A virtual environment inside the checkout holds installed packages, not project modules (but a checkout
        # inside the interpreter's prefix, say /usr/local/src/project, is still the project).
        prefixes_of_python = {p + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        prefixes_of_python |= {os.path.realpath(p) for p in prefixes_of_python}
        self._excluded = tuple(dict.fromkeys(p if p.endswith(os.sep) else p + os.sep for p in prefixes_of_python
                                             if not any(r.startswith(p.rstrip(os.sep) + os.sep)
                                                        for r in self._prefixes)))
        self._checkout = scan.checkout_packages(roots)
        self._outside: set[str] = set()
        self._seen = set(self._tracked)

    def check(self, *, explicit: bool) -> ReloadReport:
        """Reload what changed; ``explicit`` also retries modules that failed for reasons outside their file."""
        report = ReloadReport()
        pending: dict[str, bytes] = {}
        self._discover(report, pending)
        for rec in list(self._tracked.values()):
            module = sys.modules.get(rec.name)
            if module is not rec.module:
                del self._tracked[rec.name]
                self._seen.discard(rec.name)
                continue
            try:
                st = os.stat(rec.path)
            except OSError:
                if not rec.deleted:
                    rec.deleted = True
                    self._emit(report, "deleted", rec.name,
                               f"source deleted: {rec.name} ({rec.path}) no longer exists; the loaded module stays "
                               f"as it was")
                continue
            sig = scan.signature(st)
            if sig == rec.sig:
                continue
            rec.sig, rec.deleted = sig, False
            data = _read(rec.path)
            if data is None:
                continue
            new_digest = scan.digest(data)
            if new_digest == rec.digest:
                rec.failure = None
            elif rec.failure is None or rec.failure[0] != new_digest:
                pending[rec.name] = data
        for copy in self._copies.values():
            newer = copy.newer_files()
            if newer:
                self._warn_stale(report, copy, newer)
        if pending or explicit:
            for rec in self._tracked.values():
                # An import error may be cured by another module; a syntax error only by its own file, but an
                # explicit reload() says again what is still broken.
                if rec.failure is not None and (explicit or not rec.failure[1]) and rec.name not in pending:
                    pending[rec.name] = rec.failed_source
        if pending:
            importlib.invalidate_caches()  # a pulled module may import a file the import system has not seen
            collecting = gc.isenabled()
            gc.disable()  # parsing and patching make short-lived objects only; a full collection here is wasted
            try:
                self._apply_all(pending, report)
            finally:
                if collecting:
                    gc.enable()
        return report

    def _discover(self, report: ReloadReport, pending: dict[str, bytes]) -> None:
        modules = sys.modules
        new = modules.keys() - self._seen
        if not new:
            return
        self._seen |= new
        outside: list[tuple[str, str]] = []
        for name in sorted(new):
            module = modules.get(name)
            file = getattr(module, "__file__", None)
            if not isinstance(file, str) or _is_own(name) or name in ("__main__", "__mp_main__"):
                continue
            if file.endswith(".pyc"):
                try:
                    file = importlib.util.source_from_cache(file)
                except ValueError:
                    continue
            if not file.startswith(self._prefixes) or file.startswith(self._excluded) or _in_site(file):
                outside.append((name, file))
                continue
            try:
                st = os.stat(file)
            except OSError:
                continue
            data = _read(file) or b""
            rec = _Tracked(name, module, file, scan.signature(st), scan.digest(data), data,
                           file.endswith(_EXTENSIONS))
            self._tracked[name] = rec
            if not rec.extension and scan.changed_since_import(getattr(module, "__cached__", None), st, data):
                rec.digest, rec.source = b"", b""
                pending[name] = data
        tops = {name.partition(".")[0] for name, _ in outside}
        if tops - self._checkout.keys() - self._outside:
            self._checkout = scan.checkout_packages(self.roots)  # the checkout may have gained a package
            self._outside |= tops - self._checkout.keys()
        for name, file in outside:
            if name.partition(".")[0] in self._checkout:
                self._note_copy(name, file)

    def _note_copy(self, name: str, file: str) -> None:
        top = name.partition(".")[0]
        checkout = self._checkout[top]
        copy = self._copies.get(top)
        if copy is None:
            top_file = getattr(sys.modules.get(top), "__file__", None) or file
            installed = Path(top_file).parent if top_file.endswith("__init__.py") else Path(top_file)
            copy = self._copies[top] = scan.InstalledCopy(top, installed, checkout)
        copy.watch(file)  # compared with the checkout by the next check, once all new modules are watched

    def _warn_stale(self, report: ReloadReport, copy: scan.InstalledCopy, newer: list[str]) -> None:
        self._emit(report, "stale", copy.package, copy.warning(newer))

    def _apply_all(self, pending: dict[str, bytes], report: ReloadReport) -> None:
        order = self._order(pending)
        queue = [(order.get(name, 0), name, "") for name in pending]
        heapq.heapify(queue)
        done: set[str] = set()
        while queue:
            _, name, cause = heapq.heappop(queue)
            rec = self._tracked.get(name)
            if name in done or rec is None:
                continue
            done.add(name)
            data = pending.get(name)
            if data is None:
                data = _read(rec.path) or b""
            for dependent, why in self._apply(rec, data, cause, report):
                if dependent not in done:
                    heapq.heappush(queue, (order.get(dependent, 0), dependent, why))

    def _imports(self, rec: _Tracked, source: bytes, key: bytes) -> set[str]:
        if rec.imports is None or rec.imports[0] != key:
            package = scan.package_of(rec.name, hasattr(rec.module, "__path__"))
            rec.imports = (key, scan.imported_modules(source, package))
        return rec.imports[1]

    def _order(self, pending: dict[str, bytes]) -> dict[str, int]:
        """Position of each tracked module in import order: a module comes after the project modules it imports."""
        tracked = self._tracked.keys()
        graph: dict[str, frozenset[str]] = {}
        for name, rec in self._tracked.items():
            data = pending.get(name)
            imports = (self._imports(rec, data, scan.digest(data)) if data is not None
                       else self._imports(rec, rec.source, rec.digest))
            graph[name] = frozenset(imports & tracked)
        if graph != self._graph:  # most edits leave the imports as they were: the order is reused
            self._graph, self._graph_order = graph, scan.import_order(graph)
        return self._graph_order

    def _apply(self, rec: _Tracked, data: bytes, cause: str, report: ReloadReport) -> list[tuple[str, str]]:
        """Reload one module; returns the dependents to re-execute because values they imported changed."""
        new_digest = scan.digest(data)
        if rec.extension:
            rec.digest = new_digest
            self._emit(report, "restart_needed", rec.name,
                       f"restart needed: compiled extension {rec.name} ({rec.path}) changed; Python cannot reload "
                       f"a compiled extension in place")
            return []
        outcome = apply.apply_source(rec.module, rec.path, rec.source, data, rerun=bool(cause))
        if outcome.error is not None:
            rec.failure, rec.failed_source = (new_digest, outcome.syntax_error), data
            self._emit(report, "failed", rec.name,
                       f"reload failed: {rec.name}: {outcome.error}; the old module stays loaded and is tried again "
                       f"once fixed")
            return []
        rec.digest, rec.source, rec.failure, rec.failed_source = new_digest, data, None, b""
        for reason in outcome.restart:
            self._emit(report, "restart_needed", rec.name,
                       f"restart needed: {reason}; existing objects keep the old definition, restart the kernel to "
                       f"apply it everywhere")
        where, dependents = self._rebind(rec.name, outcome.rebinds, report)
        log = outcome.log
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("changed", log.changed), ("added", log.added), ("removed", log.removed)) if names]
        if where:
            parts.append(f"rebound {', '.join(where)}")
        if cause:
            line = f"reloaded {rec.name} ({cause}){': ' if parts else ''}{'; '.join(parts)}"
        else:
            line = f"reloaded {rec.name}: {'; '.join(parts) or 'no definitions changed'}"
        self._emit(report, "reloaded", rec.name, line)
        return dependents

    def _rebind(self, name: str, rebinds: dict[int, apply.Rebind],
                report: ReloadReport) -> tuple[list[str], list[tuple[str, str]]]:
        """Point names bound by ``from name import x`` (notebook and project modules) at the new objects."""
        if not rebinds:
            return [], []
        where: list[str] = []
        dependents: list[tuple[str, str]] = []
        spaces: list[tuple[str, dict[str, Any], _Tracked | None]] = []
        user_ns = self._user_ns()
        if user_ns is not None:
            spaces.append(("notebook", user_ns, None))
        spaces += [(n, r.module.__dict__, r) for n, r in self._tracked.items() if n != name]
        for label, ns, rec in spaces:
            hits, data_changed = self._rebind_in(ns, rec, name, rebinds)
            if hits:
                where.append(f"{', '.join(hits)} in {label}")
            if rec is not None and data_changed:
                dependents.append((rec.name, f"imports changed {', '.join(data_changed)} from {name}"))
        history = [user_ns.get("Out"), user_ns.get("_oh")] if user_ns is not None else []
        for entry in rebinds.values():
            holders = apply.still_held(entry, [ns for _, ns, _ in spaces], history)
            if holders:
                self._emit(report, "restart_needed", name,
                           f"restart needed: {name}.{entry.name} was re-created by the reload, but the old object is "
                           f"still held by {', '.join(sorted(set(holders))[:3])}; those keep using the old one "
                           f"(re-create them, or restart the kernel)")
        return where, dependents

    def _rebind_in(self, ns: dict[str, Any], rec: _Tracked | None, name: str,
                   rebinds: dict[int, apply.Rebind]) -> tuple[list[str], list[str]]:
        hits: list[str] = []
        data_changed: list[str] = []
        for bound_as, value in list(ns.items()):
            entry = rebinds.get(id(value))
            if entry is None or entry.old is not value or (rec is None and bound_as in _IPYTHON_NAMES):
                continue
            if isinstance(value, apply.SHARED_ATOMS) and not self._confirmed(rec, name, entry.name, bound_as):
                continue
            ns[bound_as] = entry.new
            hits.append(bound_as)
            if entry.value_changed:
                data_changed.append(entry.name)
        return hits, data_changed

    def _confirmed(self, rec: _Tracked | None, module: str, name: str, bound_as: str) -> bool:
        """Whether an import statement bound ``bound_as`` to ``module.name`` (identity alone is ambiguous)."""
        if rec is None:
            history = self._user_history()
            return (module, name, bound_as) in history if history is not None else name == bound_as
        key = scan.digest(rec.source)
        if rec.bindings is None or rec.bindings[0] != key:
            package = scan.package_of(rec.name, hasattr(rec.module, "__path__"))
            rec.bindings = (key, scan.from_bindings(rec.source, package))
        return (module, name, bound_as) in rec.bindings[1]

    def _user_ns(self) -> dict[str, Any] | None:
        if self.namespace is not None:
            return self.namespace
        if self.shell is not None:
            return self.shell.user_ns
        shell = _current_shell()
        if shell is not None:
            return shell.user_ns
        main = sys.modules.get("__main__")
        return getattr(main, "__dict__", None)

    def _user_history(self) -> set[tuple[str, str, str]] | None:
        shell = self.shell or _current_shell()
        cells = getattr(getattr(shell, "history_manager", None), "input_hist_parsed", None)
        if cells is None:
            return None
        start, found = self._history
        for cell in cells[start:]:
            if "import" in cell:
                found |= scan.from_bindings(cell, "")
        self._history = (len(cells), found)
        return found

    def _emit(self, report: ReloadReport, kind: str, name: str, line: str) -> None:
        getattr(report, kind).append(name)
        report.lines.append(line)

    def post_execute(self) -> None:
        """IPython ``post_execute`` hook: take the baseline of modules the cell imported, while it is fresh."""
        try:
            report = ReloadReport()
            pending: dict[str, bytes] = {}
            self._discover(report, pending)
            if pending:
                self._apply_all(pending, report)
        except Exception:  # noqa: BLE001 - a reloader bug must not break the session
            print("kaggle-kit reload: internal error\n" + traceback.format_exc(), file=sys.stderr)
            return
        _show(report)

    def pre_run_cell(self, info: Any = None) -> None:
        """IPython ``pre_run_cell`` hook: reload what changed and say so; never stops the cell from running."""
        try:
            report = self.check(explicit=False)
        except Exception:  # noqa: BLE001 - a reloader bug must not block the user's cell
            print("kaggle-kit reload: internal error, nothing reloaded\n" + traceback.format_exc(), file=sys.stderr)
            return
        _show(report)


def _is_own(name: str) -> bool:
    return name == _OWN_PACKAGE or name.startswith(_OWN_PACKAGE + ".")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _in_site(path: str) -> bool:
    return f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path


def _current_shell() -> Any:
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def _show(report: ReloadReport) -> None:
    for line in report.lines:
        stream = sys.stderr if line.startswith(("reload failed", "restart needed", "stale copy")) else sys.stdout
        print(line, file=stream)


_RELOADER: Reloader | None = None


def _resolve_roots(roots: list[str | os.PathLike[str]] | None) -> list[Path]:
    if roots is None:
        # The project (the one a rendered notebook names, see find_root), and the kit's tree when it is a clone
        # being edited: an installed or attached kit never changes under a session.
        from kaggle_kit.root import find_root, kit_clone

        project, kit = find_root().path, kit_clone()
        return [project] if kit is None or kit == project else [project, kit]
    resolved: list[Path] = []
    for root in roots:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise ReloadError(f"reload root {root!s} is not a folder: pass the project's checkout folder")
        resolved.append(path)
    return resolved


def _reloader(roots: list[str | os.PathLike[str]] | None) -> Reloader:
    global _RELOADER
    if _RELOADER is None:
        _RELOADER = Reloader(_resolve_roots(roots))
    elif roots is not None:
        _RELOADER.set_roots(_resolve_roots(roots))
    return _RELOADER


def add_root(path: str | os.PathLike[str]) -> None:
    """Also treat modules under ``path`` as project modules (besides the project root)."""
    extra = _resolve_roots([path])
    if _RELOADER is None:
        try:
            base = _resolve_roots(None)
        except RootNotFoundError:
            base = []
        _reloader([*base, *extra])
    elif extra[0] not in _RELOADER.roots:
        _RELOADER.set_roots([*_RELOADER.roots, *extra])


def reload(*, roots: list[str | os.PathLike[str]] | None = None, verbose: bool = True) -> ReloadReport:
    """Reload the project modules whose source changed since they were loaded.

    Args:
        roots: Folders whose modules are project modules; default the project root (``find_root()``) and the kit's
            tree when it is a writable clone.
        verbose: Print one line per reloaded module and any warnings; nothing when nothing changed.

    Returns:
        What was reloaded, what failed (the old module stays), what needs a restart, and stale-copy warnings.

    Raises:
        ReloadError: a root is not a folder.
        RootNotFoundError: ``roots`` not given and no project root found.
    """
    report = _reloader(roots).check(explicit=True)
    if verbose:
        _show(report)
    return report


def enable_autoreload(*, roots: list[str | os.PathLike[str]] | None = None, ipython: Any = None) -> None:
    """Reload changed project modules before every cell of this IPython or Jupyter session.

    Raises:
        ReloadError: not inside IPython; call ``kaggle_kit.reload()`` where the check should happen instead.
    """
    shell = ipython if ipython is not None else _current_shell()
    if shell is None:
        raise ReloadError("enable_autoreload() needs a running IPython or Jupyter kernel; in a script call "
                          "kaggle_kit.reload() where the reload should happen")
    reloader = _reloader(roots)
    disable_autoreload()
    ipython_autoreload = getattr(getattr(shell, "magics_manager", None), "registry", {}).get("AutoreloadMagics")
    if getattr(getattr(ipython_autoreload, "_reloader", None), "enabled", False):
        print("note: IPython's %autoreload is on as well; run `%autoreload off` so modules are not reloaded twice")
    reloader.shell = shell
    shell.events.register("pre_run_cell", reloader.pre_run_cell)
    shell.events.register("post_execute", reloader.post_execute)
    _show(reloader.check(explicit=False))


def disable_autoreload() -> None:
    """Stop reloading before each cell (``reload()`` still works)."""
    if _RELOADER is None or _RELOADER.shell is None:
        return
    for event, hook in (("pre_run_cell", _RELOADER.pre_run_cell), ("post_execute", _RELOADER.post_execute)):
        try:
            _RELOADER.shell.events.unregister(event, hook)
        except ValueError:
            pass
    _RELOADER.shell = None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kaggle_kit.hotreload``: :func:`enable_autoreload` for this shell, watching the project root (and
    any root given to :func:`add_root` before).

    Raises:
        RootNotFoundError: no project root found and no root added.
    """
    enable_autoreload(ipython=ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext kaggle_kit.hotreload``: stop reloading before each cell."""
    disable_autoreload()

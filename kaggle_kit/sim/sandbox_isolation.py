"""What a sandboxed kernel sees, and whether it can be had here: the launcher's plan for one session.

The kernel gets a new root holding only: the Python runtime and the system's libraries (``/usr``, ``/lib*``, ``/etc``,
the interpreter's prefixes), read-only; ``/kaggle`` (the session's tree, ``input`` read-only); its own ``/root``
(home), ``/tmp``, ``/dev`` (a few device nodes, GPUs included), ``/proc`` (of its own PID namespace) and, read-only,
``/sys``; the stand-ins for Kaggle's own modules; and the session's private folder (the kernel's sockets, the
connection file, the secrets store) at :data:`INSIDE_PRIVATE`. Nothing else of the host: no project checkout, no
host home, no host ``/tmp``. The kit itself is hidden from the runtime's site-packages (an editable install's finder
included): a session imports only what it attached.

Root inside is an unprivileged id outside (:data:`UNPRIVILEGED_ID` when the caller is root, else the caller's own),
with Docker's default capabilities, in its own user, PID, mount and IPC namespaces, and without the internet in its
own network namespace too. :mod:`kaggle_kit.sim._sandbox_launch` carries the plan out.
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "INSIDE_PRIVATE", "INSIDE_STANDINS", "UNPRIVILEGED_ID", "LAUNCHER", "STANDINS", "SessionPaths", "launch_config",
    "outside_ids", "hand_over", "namespace_problem", "unreadable_inputs", "runtime_dirs", "launch_prefix",
    "site_dir_without_kit",
]

LAUNCHER = Path(__file__).with_name("_sandbox_launch.py")
STANDINS = Path(__file__).with_name("standins")
INSIDE_PRIVATE = "/run/kaggle-kit"
INSIDE_STANDINS = "/opt/kaggle-kit/standins"
# The id a root caller's sessions run as outside: "nobody", which owns nothing the session can reach.
UNPRIVILEGED_ID = 65534
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# The kit's own entries in a site-packages folder: the package, its metadata, an editable install's .pth and finder.
_KIT_PACKAGE = __name__.split(".")[0]
_KIT_ENTRY = re.compile(r"^(__editable__[._]+)?" + _KIT_PACKAGE.replace("_", "[-_]") + r"([-_.].*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class SessionPaths:
    """The host folders of one session that the kernel sees, and the new root's mount point."""

    tree: Path  # -> /kaggle
    home: Path  # -> /root
    tmp: Path  # -> /tmp
    private: Path  # -> INSIDE_PRIVATE
    mounts: Path  # a folder of the session's own id holding the new root's mount point, ``root``

    @property
    def newroot(self) -> Path:
        return self.mounts / "root"

    def make(self) -> None:
        """Create the folders (the writable ones belong to the session's id)."""
        for path in (self.tree / "input", self.tree / "working", self.tree / "temp", self.home, self.tmp,
                     self.newroot):
            path.mkdir(parents=True, exist_ok=True)
        self.private.mkdir(mode=0o700, exist_ok=True)
        hand_over([self.tree / "working", self.tree / "temp", self.home, self.tmp, self.private, self.mounts])


def outside_ids() -> tuple[int, int]:
    """The (uid, gid) that root inside a session is outside."""
    if os.geteuid() == 0:
        return UNPRIVILEGED_ID, UNPRIVILEGED_ID
    return os.geteuid(), os.getegid()


def hand_over(paths: Iterable[Path]) -> None:
    """Give the session's writable folders (and what is already in them) to the id its root runs as."""
    if os.geteuid() != 0:
        return  # they are the caller's own, which is what root inside is
    uid, gid = outside_ids()
    for top in paths:
        for folder, dirs, files in os.walk(top):
            os.chown(folder, uid, gid, follow_symlinks=False)
            for name in (*dirs, *files):
                os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _is_under(path: str, parents: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


def runtime_dirs() -> list[str]:
    """The interpreter's prefixes and library folders outside the system folders, outermost first."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]
    candidates += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    system = ["/" + name for name in _SYSTEM_DIRS]
    chosen: list[str] = []
    for path in sorted({os.path.abspath(p) for p in candidates if os.path.isdir(p)}, key=lambda p: p.count("/")):
        if path == "/" or _is_under(path, [*system, *chosen, "/kaggle", "/proc", "/dev", "/sys"]):
            continue
        chosen.append(path)
    return chosen


def _site_dirs() -> list[str]:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    dirs += [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    return sorted({os.path.abspath(d) for d in dirs if os.path.isdir(d)})


def site_dir_without_kit(site_dir: str) -> list[dict[str, Any]]:
    """Steps that show ``site_dir`` without the kit's entries (a tmpfs over it, the other entries bound back); none
    when it holds none."""
    entries = sorted(os.listdir(site_dir))
    if not any(_KIT_ENTRY.match(name) for name in entries):
        return []
    steps: list[dict[str, Any]] = [{"op": "tmpfs", "target": site_dir, "mode": "0755"}]
    for name in entries:
        if _KIT_ENTRY.match(name):
            continue
        path = os.path.join(site_dir, name)
        if os.path.islink(path):
            steps.append({"op": "symlink", "target": path, "link": os.readlink(path)})
        elif os.path.exists(path):
            steps.append({"op": "bind", "source": os.path.realpath(path), "target": path, "read_only": True,
                          "recursive": True})
    steps.append({"op": "read_only", "target": site_dir})
    return steps


def _bind(source: str | Path, target: str, *, read_only: bool, recursive: bool = True) -> dict[str, Any]:
    return {"op": "bind", "source": os.path.realpath(source), "target": target, "read_only": read_only,
            "recursive": recursive}


def _system_steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for name in _SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            steps.append({"op": "symlink", "target": path, "link": os.readlink(path)})
        elif os.path.isdir(path):
            steps.append(_bind(path, path, read_only=True))
    resolv = os.path.realpath("/etc/resolv.conf")
    if os.path.isfile(resolv) and not _is_under(resolv, ["/" + name for name in _SYSTEM_DIRS]):
        steps.append(_bind(resolv, resolv, read_only=True, recursive=False))  # e.g. systemd's, under /run
    if os.path.isdir("/sys"):
        steps.append(_bind("/sys", "/sys", read_only=True))
    steps.append({"op": "tmpfs", "target": "/dev", "mode": "0755"})
    devices = [name for name in _DEVICES if os.path.exists("/dev/" + name)]
    devices += sorted(name for name in os.listdir("/dev") if name.startswith("nvidia"))  # GPUs, when the host has them
    for name in devices:
        path = "/dev/" + name
        if os.path.isdir(path):
            steps.append(_bind(path, path, read_only=False))
        else:
            steps.append({"op": "dev", "source": path, "target": path})
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        steps.append({"op": "symlink", "target": "/dev/" + name, "link": link})
    steps.append({"op": "tmpfs", "target": "/dev/shm", "mode": "1777"})
    steps.append({"op": "dir", "target": "/proc"})
    return steps


def launch_config(paths: SessionPaths, *, internet: bool, inputs: Iterable[tuple[Path, str]]) -> dict[str, Any]:
    """The launcher's config for a session: ``inputs`` are (host folder, path under ``/kaggle/input``)."""
    uid, gid = outside_ids()
    steps = _system_steps()
    steps += [
        _bind(paths.tmp, "/tmp", read_only=False, recursive=False),
        _bind(paths.home, "/root", read_only=False, recursive=False),
        _bind(paths.tree, "/kaggle", read_only=False, recursive=False),
        _bind(paths.tree / "input", "/kaggle/input", read_only=False, recursive=False),
        _bind(paths.private, INSIDE_PRIVATE, read_only=False, recursive=False),
        _bind(STANDINS, INSIDE_STANDINS, read_only=True),
    ]
    runtime = runtime_dirs()
    for folder in runtime:
        steps.append(_bind(folder, folder, read_only=True))
    visible = [*("/" + name for name in _SYSTEM_DIRS), *runtime]
    for site_dir in _site_dirs():
        if _is_under(site_dir, visible):
            steps += site_dir_without_kit(site_dir)
    for source, target in inputs:
        steps.append(_bind(source, f"/kaggle/input/{target}", read_only=True))
    steps.append({"op": "read_only", "target": "/kaggle/input"})
    steps.append({"op": "read_only", "target": "/"})
    return {"uid": uid, "gid": gid, "internet": internet, "newroot": str(paths.newroot), "cwd": "/kaggle/working",
            "steps": steps}


def launch_prefix(config_path: Path) -> list[str]:
    """The command that starts a process in the sandbox described by ``config_path``; append the process's argv."""
    return [sys.executable, "-I", "-S", str(LAUNCHER), str(config_path), "--"]


def unreadable_inputs(sources: Iterable[Path], *, limit: int = 5) -> list[str]:
    """Input files and folders the session's root cannot read (the caller is root, and they are its alone)."""
    if os.geteuid() != 0:
        return []
    uid, _ = outside_ids()
    found: list[str] = []

    def check(path: str, *, folder: bool) -> None:
        try:
            info = os.stat(path)
        except OSError:
            return
        need = 0o5 if folder else 0o4
        if info.st_uid != uid and (info.st_mode & need) != need:
            found.append(path)

    for source in sources:
        for folder, dirs, files in os.walk(source):
            check(folder, folder=True)
            for name in files:
                check(os.path.join(folder, name), folder=False)
            if len(found) >= limit:
                return found[:limit]
    return found


_probe_lock = threading.Lock()
_probe_result: dict[str, str | None] = {}


def namespace_problem() -> str | None:
    """Why a session cannot be isolated here, or None when it can (checked once per process)."""
    with _probe_lock:
        if "result" not in _probe_result:
            _probe_result["result"] = _probe()
        return _probe_result["result"]


def _probe() -> str | None:
    """Start a trivial process through the launcher with a session's whole plan, and check what it saw."""
    if not sys.platform.startswith("linux"):
        return f"user, PID and mount namespaces need Linux (this is {sys.platform})"
    with tempfile.TemporaryDirectory(prefix="kaggle-kit-probe-") as folder:
        base = Path(folder)
        paths = SessionPaths(tree=base / "kaggle", home=base / "home", tmp=base / "tmp", private=base / "private",
                             mounts=base / "mnt")
        paths.make()
        config = base / "launch.json"
        config.write_text(json.dumps(launch_config(paths, internet=False, inputs=())))
        check = ("import os, sys; sys.exit(0 if os.getuid() == 0 and os.getcwd() == '/kaggle/working' "
                 "and not os.path.exists('" + folder + "') else 3)")
        try:
            proc = subprocess.run([*launch_prefix(config), sys.executable, "-I", "-S", "-c", check],
                                  capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the isolation probe could not run: {exc}"
    if proc.returncode != 0:
        return proc.stderr.strip() or f"the isolation probe exited with status {proc.returncode}"
    return None

"""The moving parts of one sandbox session: the kernel's launch, the session log, the deadline and the kill.

The building blocks of :mod:`kaggle_kit.sim.sandbox`, which is the interface to use.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class SessionLog:
    """The session's two logs: Kaggle's, and the sandbox's own.

    Kaggle's log (``path``) holds what the notebook printed, in Kaggle's shape: a JSON list of ``{stream_name, time,
    data}``, one record per line, flushed as they come so it can be followed while the session runs; ``close`` ends
    the list. The sandbox's messages (what it set up, how the session ended) go to ``sandbox_path``, plain lines, so
    Kaggle's log holds nothing Kaggle's would not, except :meth:`warn`: a departure from Kaggle the log's reader must
    not miss.
    """

    def __init__(self, path: Path, sandbox_path: Path, start: float, *,
                 echo: Callable[[str, str], None] | None = None) -> None:
        self.path = path
        self.sandbox_path = sandbox_path
        self._start = start
        self._echo = echo
        self._lock = threading.Lock()
        self._fh = path.open("w", encoding="utf-8")
        self._sandbox_fh = sandbox_path.open("w", encoding="utf-8")
        self._first = True
        self._fh.write("[")

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._start, 3)

    def record(self, stream: str, data: str) -> None:
        """A stream record of the notebook, in Kaggle's log."""
        if not data:
            return
        entry = json.dumps({"stream_name": stream, "time": self._elapsed(), "data": data})
        with self._lock:
            if self._fh.closed:
                return
            self._fh.write(("" if self._first else ",") + entry + "\n")
            self._first = False
            self._fh.flush()
            if self._echo is not None:
                self._echo(stream, data)

    def sandbox(self, message: str) -> None:
        """A line from the sandbox itself, in the sandbox's log."""
        with self._lock:
            if self._sandbox_fh.closed:
                return
            self._sandbox_fh.write(f"{self._elapsed():10.3f} {message}\n")
            self._sandbox_fh.flush()
            if self._echo is not None:
                self._echo("sandbox", f"[kaggle-kit sandbox] {message}\n")

    def warn(self, message: str) -> None:
        """A departure from Kaggle: in the sandbox's log and, marked as the sandbox's, in Kaggle's log too."""
        self.sandbox(message)
        self.record("stderr", f"[kaggle-kit sandbox] {message}\n")

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.write("]\n")
                self._fh.close()
            self._sandbox_fh.close()


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a session log (a finished one, or one still being written)."""
    text = path.read_text(encoding="utf-8")
    if not text.rstrip().endswith("]"):
        text = text + "]"
    return json.loads(text)


@dataclass(frozen=True)
class InsideConnection:
    """The kernel's connection file as an isolated kernel sees it: its sockets under another path.

    Attributes:
        host_path: where the file is written on the host.
        inside_path: the same file as the kernel sees it.
        ip: the prefix of the kernel's Unix sockets as the kernel sees it.
        owner: (uid, gid) the file is given to, or None to leave it to the caller.
    """

    host_path: Path
    inside_path: str
    ip: str
    owner: tuple[int, int] | None

    def write(self, connection_file: str) -> str:
        """Write the kernel's copy of ``connection_file``; returns its path inside."""
        with open(connection_file, encoding="utf-8") as fh:
            info = json.load(fh)
        info["ip"] = self.ip
        fd = os.open(self.host_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(info, out)
        if self.owner is not None:
            os.chown(self.host_path, *self.owner)
        return self.inside_path


class SessionKernelManager(AsyncKernelManager):
    """Launches ipykernel with this interpreter, behind the sandbox's launcher when the session is isolated.

    The kernel command is built here rather than taken from a kernel spec, so a user's own ``python3`` kernel spec
    cannot send the session to another interpreter.
    """

    launch_prefix: list[str] = []
    inside: InsideConnection | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        connection = os.path.realpath(self.connection_file)
        if self.inside is not None:
            connection = self.inside.write(self.connection_file)
        kernel = [
            sys.executable, "-m", "ipykernel_launcher", "-f", connection,
            "--HistoryManager.hist_file=:memory:",  # no history database: nothing to write, faster start
        ]
        return [*self.launch_prefix, *kernel, *(extra_arguments or [])]


class SessionClient(NotebookClient):
    """nbclient's executor, also writing every output to the session log and remembering the running cell."""

    def __init__(self, nb: Any, *, km: AsyncKernelManager, log: SessionLog, **kw: Any) -> None:
        super().__init__(nb, km=km, on_cell_execute=self._on_cell_execute, **kw)
        self.session_log = log
        self.running_cell: int | None = None

    def _on_cell_execute(self, cell: Any, cell_index: int) -> None:
        self.running_cell = cell_index

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        content = msg.get("content", {})
        kind = msg.get("msg_type")
        if kind == "stream":
            self.session_log.record(content.get("name", "stdout"), content.get("text", ""))
        elif kind == "error":
            trace = "\n".join(content.get("traceback", [])) or f"{content.get('ename')}: {content.get('evalue')}"
            self.session_log.record("stderr", _ANSI.sub("", trace) + "\n")
        elif kind in ("execute_result", "display_data"):
            text = content.get("data", {}).get("text/plain")
            if text:
                self.session_log.record("stdout", text + "\n")
        return super().output(outs, msg, display_id, cell_index)


def _proc_table() -> dict[int, tuple[str, int, int]]:
    """Every live process: pid -> (state, ppid, pgid)."""
    table: dict[int, tuple[str, int, int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: only the process group can be killed
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry)] = (fields[0], int(fields[1]), int(fields[2]))
    return table


def _pid_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def session_namespace(pid: int) -> str | None:
    """The PID namespace of the session started as ``pid`` (found among its descendants), or None while there is
    none (not isolated, or not yet)."""
    own = _pid_ns("self")
    table = _proc_table()
    family = {pid}
    grew = True
    while grew:
        grew = False
        for p, (_state, ppid, _pgid) in table.items():
            if ppid in family and p not in family:
                family.add(p)
                grew = True
    for p in sorted(family):
        ns = _pid_ns(p)
        if ns is not None and ns != own:
            return ns
    return None


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_session(pid: int, *, namespace: str | None = None, deadline_s: float = 5.0) -> list[int]:
    """SIGKILL every process of the kernel's session at once, and wait until all are dead.

    The session is the kernel's process group, its descendants (including any that started a session of their own),
    and, when the kernel runs in its own PID namespace, every process in that namespace (which catches daemons that
    double-forked away); ``namespace`` is that namespace when known, looked up from ``pid`` otherwise. Everything is
    first frozen with SIGSTOP (neither catchable nor a warning): a stopped process cannot fork, and its children keep
    their parent link, so the whole tree is found before anything dies and an orphan cannot slip away. Returns the
    pids still alive at the deadline (normally none).
    """
    session_ns = namespace or session_namespace(pid)
    me = os.getpid()
    family = {pid}

    def members() -> set[int]:
        table = _proc_table()
        grew = True
        while grew:  # descendants, remembered across rounds since an orphan loses its parent link
            grew = False
            for p, (_state, ppid, _pgid) in table.items():
                if ppid in family and p not in family:
                    family.add(p)
                    grew = True
        return {
            p
            for p, (state, _ppid, pgid) in table.items()
            if p != me
            and state not in ("Z", "X")
            and (p in family or pgid == pid or (session_ns is not None and _pid_ns(p) == session_ns))
        }

    try:
        os.killpg(pid, signal.SIGSTOP)  # the launcher gave the kernel a session of its own, so pgid == pid
    except (ProcessLookupError, PermissionError):
        pass
    stop = time.monotonic() + deadline_s
    frozen: set[int] = set()
    while time.monotonic() < stop:
        fresh = members() - frozen
        if not fresh:
            break
        _signal(fresh, signal.SIGSTOP)
        frozen |= fresh
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _signal(frozen, signal.SIGKILL)
    while True:
        alive = members()
        if not alive or time.monotonic() > stop:
            return sorted(alive)
        _signal(alive, signal.SIGKILL)
        time.sleep(0.01)


class Deadline:
    """Kills the session at a deadline unless disarmed first; the kill and the disarm never interleave.

    :meth:`fire_now` kills it earlier for another ``reason`` (the progress-triggered kill); whichever comes first wins.
    """

    def __init__(self, delay_s: float, reason: str, kill: Callable[[], None]) -> None:
        self.reason = reason
        self.fired_at: float | None = None
        self._kill = kill
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(max(delay_s, 0.0), self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def _fire(self) -> None:
        self.fire_now(self.reason)

    def fire_now(self, reason: str) -> bool:
        """Kill the session now, as ``reason``; False when it was already killed or disarmed."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            self.reason = reason
            self._kill()
            # Stamped once every process is dead: nothing the session wrote can be later than this.
            self.fired_at = time.time()
        self._timer.cancel()
        return True

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def disarm(self) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


class StepWatch:
    """Calls ``fire(step)`` once a training loop's progress file under ``folder`` reports ``at_step`` or later.

    The file is ``progress.json`` (the training loop replaces it atomically after every optimizer step), found anywhere
    under ``folder``. The session keeps running while the file is read, so the kill lands at ``at_step`` or a few steps
    later, as an outside kill does; a slow machine slows both sides alike.
    """

    def __init__(self, folder: Path, at_step: int, fire: Callable[[int], object], *, interval_s: float = 0.05) -> None:
        from kaggle_kit.training import PROGRESS_FILE

        self.folder = folder
        self.at_step = at_step
        self.seen_step: int | None = None
        self._name = PROGRESS_FILE
        self._fire = fire
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._found: Path | None = None
        self._stamp: tuple[int, int, int] | None = None  # (inode, mtime, size) of the version last read
        self._thread = threading.Thread(target=self._watch, name="kaggle-kit-step-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            step = self._read_step()
            if step is not None and step >= self.at_step:
                self._fire(step)
                return

    def _read_step(self) -> int | None:
        """The step the progress file reports now, or None (no file yet, unchanged, or not readable yet)."""
        try:
            if self._found is None or not self._found.is_file():
                self._found = min(self.folder.rglob(self._name), default=None)
                self._stamp = None
                if self._found is None:
                    return None
            stat = self._found.stat()
            stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return None
            progress = json.loads(self._found.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        self._stamp = stamp
        step = progress.get("step") if isinstance(progress, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            self.seen_step = step
            return step
        return None

"""Shared fixtures: an isolated Kaggle client environment and the offline Kaggle API stand-in.

* ``kaggle_isolation``: HOME, KAGGLE_CONFIG_DIR, XDG_CONFIG_HOME and TMPDIR under the test's tmp_path and no
  Kaggle credentials, endpoints or notebook variables inherited from the machine. Yields the isolated HOME.
* ``sim_server``: a running ``SimServer`` (user ``alice``, a 32-hex key, a sandbox when
  ``kaggle_kit.sim.sandbox`` is importable), shared by the tests of one module (use distinct slugs per test).
  Kaggle's limits, except that a single-file download over 1 KiB arrives zipped, so the kit's checkpoint downloads
  take that path; a test that needs other settings uses ``with sim_server.configured(name=value):``.
  Exports KAGGLE_USERNAME/KAGGLE_KEY and KAGGLE_KIT_API_ENDPOINT, points in-process clients at it, and clears
  armed faults after each test. ``sim_server.client_env()`` adds what a CLI subprocess needs
  (KAGGLE_API_ENVIRONMENT=LOCALHOST, HTTP_PROXY, no NO_PROXY); HTTP_PROXY is never set in this process.
* ``kaggle_cli``: runs the real ``kaggle`` CLI as a subprocess against ``sim_server``.
* ``kit_attached``: the kit attached to a sandboxed session the way Kaggle allows it, as a dataset: its ``mount``
  for ``SessionSpec.mounts`` and the ``bootstrap`` cell that puts it on ``sys.path`` (a session sees nothing else of
  this machine, the kit's installation included).

Every test runs under pytest-timeout's limit (setup.cfg), a safety net sized for a loaded machine, never a measure
of speed. When it fires, the failure names what was still running: the processes the test started (sandboxed
kernels, CLI subprocesses, training ranks), how long each had run, and where each thread of the test was.
"""

from __future__ import annotations

import compileall
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

SIM_USER = "alice"
REPO = Path(__file__).resolve().parents[1]
KIT_DATASET = "kaggle-kit/kaggle-kit"  # owner/slug of the kit attached as a dataset

_LEAKY_VARS = (
    "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT", "KAGGLE_CONFIG_DIR",
    "KAGGLE_KIT_API_ENDPOINT", "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "KAGGLE_USER_SECRETS_TOKEN",
    "KAGGLE_DATA_PROXY_URL", "KAGGLE_DATA_PROXY_TOKEN", "KAGGLE_DATA_PROXY_PROJECT", "KAGGLE_API_V1_TOKEN",
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
    "VERBOSE", "VERBOSE_OUTPUT",
)


@pytest.fixture
def kaggle_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake Kaggle filesystem (``input``, ``working``, ``temp``) that the kit sees through KAGGLE_KIT_KAGGLE_ROOT."""
    root = tmp_path / "kaggle"
    for sub in ("input", "working", "temp"):
        (root / sub).mkdir(parents=True)
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(root))
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    return root


@pytest.fixture
def kaggle_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Isolate the Kaggle client from the machine: own HOME, config dir and TMPDIR, no credentials."""
    home = tmp_path / "home"
    config = home / ".kaggle"
    tmp = tmp_path / "tmp"
    for folder in (config, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    for name in _LEAKY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("TMPDIR", str(tmp))
    # gettempdir() caches its answer; the client keeps resumable-upload state there.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield home
    try:
        from kaggle_kit.kaggle_api import restore_default_endpoints
    except ImportError:
        return
    restore_default_endpoints()


def _make_sandbox(workdir: Path) -> object | None:
    try:
        from kaggle_kit.sim.sandbox import Sandbox
    except ImportError:
        return None
    return Sandbox(workdir)


@pytest.fixture(scope="module")
def _sim_server_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from kaggle_kit.sim.server import SimServer, SimSettings

    root = tmp_path_factory.mktemp("sim")
    server = SimServer(root / "state", username=SIM_USER, key=secrets.token_hex(16), processing_seconds=0.0,
                       sandbox=_make_sandbox(root / "sandbox"), competitions_dir=root / "competitions",
                       settings=SimSettings(zip_single_files_over_bytes=1024))
    (root / "competitions").mkdir()
    with server:
        yield server


@pytest.fixture
def sim_server(_sim_server_module: object, kaggle_isolation: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The module's running SimServer, with this process's Kaggle clients pointed at it."""
    server = _sim_server_module
    env = server.client_env({})  # type: ignore[attr-defined]
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_KIT_API_ENDPOINT"):
        monkeypatch.setenv(name, env[name])
    from kaggle_kit.kaggle_api import point_client_at

    point_client_at(server.url)  # type: ignore[attr-defined]
    yield server
    server.clear_faults()  # type: ignore[attr-defined]


@pytest.fixture
def kaggle_cli(sim_server: object) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kaggle_cli("datasets", "list", "--mine", cwd=...)`` runs the real CLI against ``sim_server``.

    The CLI exits 0 on many server-side errors: check ``.stdout``/``.stderr``, not only the exit status.
    """

    def run(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        full_env = sim_server.client_env()  # type: ignore[attr-defined]
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "kaggle", *args], cwd=cwd, env=full_env, capture_output=True,
                              text=True, timeout=timeout)

    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules with the most ``slow`` tests first, so parallel workers (one module each) never end on a long one
    while the others idle; and skip ``@pytest.mark.gpu`` tests on machines without CUDA (torch is imported only if
    one is collected)."""
    slow: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        slow[module] = slow.get(module, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: -slow[item.nodeid.split("::")[0]])  # stable: file order within a module
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


@dataclass(frozen=True)
class AttachedKit:
    """The kit as a dataset ``kaggle-kit/kaggle-kit`` whose top folder holds the ``kaggle_kit`` package."""

    folder: Path
    handle: str = KIT_DATASET

    @property
    def mount(self) -> Any:
        """The dataset for ``SessionSpec.mounts``, placed where the session's input layout puts datasets."""
        from kaggle_kit.sim.sandbox import InputMount

        return InputMount(self.folder, "dataset", self.handle)

    @property
    def bootstrap(self) -> str:
        """A notebook's first cell: find the attached kit under either layout and put it on ``sys.path`` (the kit
        passes it on to the Python processes it starts)."""
        owner, slug = self.handle.split("/")
        return (
            "import os, sys\n"
            "_inputs = os.path.join(os.environ.get('KAGGLE_KIT_KAGGLE_ROOT', '/kaggle'), 'input')\n"
            f"_kit = next(p for p in (os.path.join(_inputs, 'datasets', {owner!r}, {slug!r}), "
            f"os.path.join(_inputs, {slug!r}))\n"
            "            if os.path.isfile(os.path.join(p, 'kaggle_kit', '__init__.py')))\n"
            "sys.path.insert(0, _kit)"
        )


@pytest.fixture(scope="session")
def kit_attached(tmp_path_factory: pytest.TempPathFactory) -> AttachedKit:
    """This checkout's kit, copied into a dataset folder (with its byte code, so sessions import it fast)."""
    folder = tmp_path_factory.mktemp("kit") / "dataset"  # mktemp's own folder is private to this user
    folder.mkdir(mode=0o755)
    shutil.copytree(REPO / "kaggle_kit", folder / "kaggle_kit", ignore=shutil.ignore_patterns("__pycache__"))
    # A session cannot write byte code into its read-only input: compiled here, once, it never compiles the kit.
    compileall.compile_dir(folder / "kaggle_kit", quiet=1)
    for path in folder.rglob("*"):  # readable by the session's unprivileged id, whatever this checkout's umask
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
    return AttachedKit(folder)


def _descendants(root: int) -> list[tuple[int, float, str]]:
    """(pid, seconds running, command line) of every live process below ``root``, oldest first."""
    table: dict[int, tuple[int, int]] = {}  # pid -> (ppid, start in clock ticks since boot)
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().decode(errors="replace").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X"):
            table[int(entry)] = (int(fields[1]), int(fields[19]))
    family: set[int] = set()
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if (ppid == root or ppid in family) and pid not in family:
                family.add(pid)
                grew = True
    try:
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except OSError:
        uptime = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    found = []
    for pid in family:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((pid, max(0.0, uptime - table[pid][1] / ticks), command))
    return sorted(found, key=lambda row: -row[1])


def _still_running(item: pytest.Item, timeout: float) -> str:
    """What a test that ran past its timeout was still doing: its processes and its threads."""
    lines = [f"{item.nodeid} was still running after {timeout:g} s, pytest-timeout's limit (a safety net sized "
             "for a loaded machine; pass --timeout=SECONDS for a slower one). Still running:"]
    processes = _descendants(os.getpid())
    for pid, age, command in processes:
        lines.append(f"  process {pid}, {age:.0f} s old: {command[:300]}")
    if not processes:
        lines.append("  no process of its own")
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        where = traceback.extract_stack(frame)[-1]
        lines.append(f"  thread {names.get(ident, ident)}: {where.filename}:{where.lineno} in {where.name}")
    return "\n".join(lines)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's signal method, with a failure message that says what was still running."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own way (the thread method dumps every stack)

    def fire(signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        pytest.fail(_still_running(item, settings.timeout), pytrace=True)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # what pytest-timeout's cancel hook calls
    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True

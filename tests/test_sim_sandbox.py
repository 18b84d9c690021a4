"""The session sandbox runs notebooks as Kaggle does: literal /kaggle paths, read-only input, internet off, secrets
only through kaggle_secrets, SIGKILL of everything at the limit, and Batch/Interactive output semantics.

Each kernel start costs a second or two, so one notebook checks several things and the tests share its result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from kaggle_kit.commands.sim import add_run_arguments, parse_duration, run_command, secrets_from_args
from kaggle_kit.errors import SandboxError
from kaggle_kit.sim.sandbox import InputMount, Sandbox, SessionResult, SessionSpec, namespace_problem
from kaggle_kit.sim.sandbox_isolation import UNPRIVILEGED_ID, runtime_dirs, site_dir_without_kit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's kill and probes use /proc")

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-" + "9f1c2e7a" * 4
HOST_KEY = "hostkey-" + "0123abcd" * 4


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


class _Listener:
    """A TCP server on the host's 127.0.0.1 that accepts and closes every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.close()


# Records what the kernel saw; every later cell adds to FACTS, the last writes it to /kaggle/working/facts.json.
_PROBE_SOCKET = """
import socket
def probe(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            return "connected"
    except OSError as exc:
        return type(exc).__name__
FACTS["socket"] = probe(int(os.environ["PROBE_PORT"]))
"""
_TRY_WRITE = (
    "def try_write(path):\n"
    "    try:\n"
    "        open(path, 'w').write('x')\n"
    "        return 'written'\n"
    "    except OSError as exc:\n"
    "        return errno.errorcode.get(exc.errno, str(exc.errno))"
)
# Run by the kernel in a child: a nested user namespace has every capability; the inputs must stay locked read-only.
_NESTED_REMOUNT = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x20000):
    print("unshare", errno.errorcode[ctypes.get_errno()])
elif libc.mount(None, b"/kaggle/input/datasets/alice/tiny", None, 0x20 | 0x1000, None):
    print(errno.errorcode[ctypes.get_errno()])
else:
    print("succeeded")
"""
# The escapes, tried for real: each must fail. ``attempt`` names the errno, or says 'succeeded'.
_ATTACKS = (
    "import ctypes, signal, subprocess, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def attempt(action):\n"
    "    try:\n"
    "        if action() == -1:\n"
    "            return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))\n"
    "        return 'succeeded'\n"
    "    except OSError as exc:\n"
    "        return errno.errorcode.get(exc.errno, str(exc.errno))\n"
    "A = {}\n"
    "victim = int(os.environ['VICTIM_PID'])\n"
    "def join_host_network():\n"
    "    fd = os.open(f'/proc/{victim}/ns/net', os.O_RDONLY)\n"
    "    return libc.setns(fd, 0x40000000)\n"
    "A['setns'] = attempt(join_host_network)\n"
    "A['socket_after_setns'] = probe(int(os.environ['PROBE_PORT']))\n"
    "INPUT = b'/kaggle/input/datasets/alice/tiny'\n"
    "A['remount'] = attempt(lambda: libc.mount(None, INPUT, None, 0x20 | 0x1000, None))\n"
    "A['write_after_remount'] = try_write('/kaggle/input/datasets/alice/tiny/values.txt')\n"
    "A['nested_remount'] = subprocess.run([sys.executable, '-c', os.environ['NESTED_REMOUNT']],\n"
    "                                     capture_output=True, text=True).stdout.strip()\n"
    "for name, path in json.loads(os.environ['HOST_FILES']).items():\n"
    "    A['read_' + name] = attempt(lambda: open(path).read() and None)\n"
    "A['write_host_dir'] = try_write(os.path.join(os.environ['HOST_DIR'], 'planted-by-kernel.txt'))\n"
    "A['kill'] = attempt(lambda: os.kill(victim, signal.SIGKILL))\n"
    "A['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
    "A['root_entries'] = sorted(os.listdir('/'))\n"
    "home = os.path.expanduser('~')\n"
    "A['home_entries'] = {n: [os.lstat(os.path.join(home, n)).st_dev, os.lstat(os.path.join(home, n)).st_ino]\n"
    "                     for n in os.listdir(home)}\n"
    "A['cap_sys_admin'] = bool(int(open('/proc/self/status').read().split('CapEff:')[1].split()[0], 16) >> 21 & 1)\n"
    "FACTS['attacks'] = A"
)


def _offline_cells(bootstrap: str) -> tuple[str, ...]:
    return (
        "import errno, hashlib, json, os\nFACTS = {'cwd': os.getcwd(), 'uid': os.getuid()}\n"
        "try:\n    import kaggle_kit\n    FACTS['kit_unattached'] = kaggle_kit.__file__\n"
        "except ImportError as exc:\n    FACTS['kit_unattached'] = type(exc).__name__",
        bootstrap,
        # literal /kaggle paths, one input layout
        "FACTS['current'] = open('/kaggle/input/datasets/alice/tiny/values.txt').read()\n"
        "FACTS['legacy_present'] = os.path.exists('/kaggle/input/tiny')\n"
        "open('/kaggle/working/copy.txt', 'w').write(FACTS['current'])\n"
        "os.symlink('copy.txt', '/kaggle/working/inside_link')\n"
        "os.symlink('/etc/hostname', '/kaggle/working/outside_link')\n"
        "open('/kaggle/temp/scratch.txt', 'w').write('scratch')\n"
        "FACTS['temp'] = open('/kaggle/temp/scratch.txt').read()\n"
        "print('to the log')",
        # input is read-only, at its root and inside a mounted input
        _TRY_WRITE + "\n"
        "FACTS['write_input_root'] = try_write('/kaggle/input/new.txt')\n"
        "FACTS['write_input_dataset'] = try_write('/kaggle/input/datasets/alice/tiny/new.txt')\n"
        "FACTS['write_input_current'] = try_write('/kaggle/input/datasets/alice/tiny/values.txt')",
        _PROBE_SOCKET,
        "FACTS['env'] = {k: os.environ.get(k) for k in ('KAGGLE_KIT_SIM_ACCELERATOR', 'KAGGLE_KIT_SIM_SESSION_LIMIT_S',\n"
        "    'KAGGLE_KIT_SIM_QUOTA_LEFT_S', 'KAGGLE_KIT_SIM_SESSION_START', 'KAGGLE_KERNEL_RUN_TYPE', 'KAGGLE_KEY',\n"
        "    'KAGGLE_USERNAME', 'KAGGLE_KIT_KAGGLE_ROOT', 'KAGGLE_KIT_API_ENDPOINT', 'KAGGLE_USER_SECRETS_TOKEN',\n"
        "    'KAGGLE_URL_BASE', 'KAGGLE_DATA_PROXY_URL', 'KAGGLE_KIT_SIM_SECRETS_FILE', 'PYTHONPATH')}",
        "from kaggle_secrets import UserSecretsClient, BackendError\n"
        "secret = UserSecretsClient().get_secret('API_KEY')\n"
        "FACTS['secret_sha'] = hashlib.sha256(secret.encode()).hexdigest()\n"
        "FACTS['secret_in_env'] = any(secret in v for v in os.environ.values())\n"
        "try:\n"
        "    UserSecretsClient().get_secret('NOT_ATTACHED')\n"
        "except BackendError as exc:\n"
        "    FACTS['missing_secret'] = str(exc)",
        "import kaggle_kit.env\nFACTS['kit_working_dir'] = str(kaggle_kit.env.working_dir())\n"
        "FACTS['kit_file'] = kaggle_kit.__file__",
        _ATTACKS,
        "json.dump(FACTS, open('/kaggle/working/facts.json', 'w'))",
    )


@dataclass(frozen=True)
class _Offline:
    result: SessionResult
    data: Path
    host_dir: Path
    host_files: dict[str, str]
    victim: subprocess.Popen


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, listener: _Listener, kit_attached) -> Iterator[_Offline]:
    """One Batch session without internet, on a simulated T4x2, with an input, a secret, the kit attached and host
    credentials set, whose notebook also tries every escape from the sandbox."""
    root = tmp_path_factory.mktemp("offline")
    data = root / "tiny"
    data.mkdir()
    (data / "values.txt").write_text("1,2,3")
    planted = root / "host-secret.txt"
    planted.write_text("host only")
    host_files = {"planted": str(planted), "checkout": str(REPO / "README.md"),
                  "session_workdir": str(root / "work"), "host_tmp_folder": str(root)}
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KAGGLE_USERNAME", "host-user")
            mp.setenv("KAGGLE_KEY", HOST_KEY)
            mp.delenv("KAGGLE_KIT_SIM_ISOLATION", raising=False)
            spec = SessionSpec(
                _notebook(*_offline_cells(kit_attached.bootstrap)),
                run_type="Batch",
                mounts=(InputMount(data, "dataset", "alice/tiny"), kit_attached.mount),
                internet=False,
                accelerator="T4x2",
                # 12 h at clock scale 60 is 12 real minutes: a scaled limit the session never meets, however slow.
                time_limit_s=12 * 3600,
                clock_scale=60,
                quota_left_s=30 * 3600,
                secrets={"API_KEY": SECRET},
                env={"PROBE_PORT": str(listener.port), "VICTIM_PID": str(victim.pid),
                     "HOST_FILES": json.dumps(host_files), "HOST_DIR": str(root),
                     "NESTED_REMOUNT": _NESTED_REMOUNT},
            )
            result = Sandbox(root / "work").run(spec)
        yield _Offline(result, data, root, host_files, victim)
    finally:
        victim.kill()
        victim.wait()


def _facts(result: SessionResult) -> dict:
    assert result.status == "COMPLETE", result.failure_message
    assert result.output_dir is not None
    return json.loads((result.output_dir / "facts.json").read_text())


@pytest.fixture(autouse=False)
def needs_namespaces() -> None:
    problem = "KAGGLE_KIT_SIM_ISOLATION=env" if os.environ.get("KAGGLE_KIT_SIM_ISOLATION") == "env" else None
    problem = problem or namespace_problem()
    if problem:
        pytest.skip(f"no namespaces here: {problem}")


def test_literal_kaggle_paths_work(offline: _Offline, needs_namespaces: None) -> None:
    result = offline.result
    facts = _facts(result)
    assert result.isolation == "namespace"
    assert facts["cwd"] == "/kaggle/working"
    assert facts["current"] == "1,2,3"
    assert facts["legacy_present"] is False  # one layout per session: the current one by default
    assert result.input_layout == "current"
    assert facts["temp"] == "scratch"
    assert facts["env"]["KAGGLE_KIT_KAGGLE_ROOT"] is None
    assert facts["kit_working_dir"] == "/kaggle/working"


def test_the_kit_is_importable_only_once_attached(offline: _Offline, needs_namespaces: None) -> None:
    facts = _facts(offline.result)
    assert facts["kit_unattached"] == "ModuleNotFoundError"  # neither the checkout nor the venv's install shows
    assert facts["kit_file"] == "/kaggle/input/datasets/kaggle-kit/kaggle-kit/kaggle_kit/__init__.py"
    assert str(REPO) not in (facts["env"]["PYTHONPATH"] or "")


def test_input_is_read_only(offline: _Offline, needs_namespaces: None) -> None:
    facts = _facts(offline.result)
    assert facts["write_input_root"] == "EROFS"
    assert facts["write_input_dataset"] == "EROFS"
    assert facts["write_input_current"] == "EROFS"
    assert sorted(p.name for p in offline.data.iterdir()) == ["values.txt"]
    assert (offline.data / "values.txt").read_text() == "1,2,3"


def test_internet_off_cannot_reach_the_host(offline: _Offline, needs_namespaces: None) -> None:
    result = offline.result
    facts = _facts(result)
    assert result.internet_blocked
    assert facts["socket"] == "ConnectionRefusedError"
    assert facts["env"]["KAGGLE_KIT_API_ENDPOINT"] is None


def test_every_escape_fails(offline: _Offline, needs_namespaces: None) -> None:
    """The issue's escapes: join the host's network namespace, remount an input read-write (also from a nested user
    namespace), read and write host files, SIGKILL a host process. Each fails, and the host is unchanged."""
    attacks = _facts(offline.result)["attacks"]
    assert attacks["setns"] != "succeeded" and attacks["socket_after_setns"] == "ConnectionRefusedError"
    assert attacks["remount"] == "EPERM" and attacks["write_after_remount"] == "EROFS"
    assert attacks["nested_remount"] not in ("", "succeeded"), attacks["nested_remount"]
    for name in offline.host_files:
        assert attacks[f"read_{name}"] == "ENOENT", (name, attacks[f"read_{name}"])
    assert attacks["write_host_dir"] != "written"
    assert not (offline.host_dir / "planted-by-kernel.txt").exists()
    assert (offline.data / "values.txt").read_text() == "1,2,3"
    assert attacks["kill"] == "ESRCH" and offline.victim.poll() is None
    assert offline.victim.pid not in attacks["pids"] and os.getpid() not in attacks["pids"]
    assert attacks["cap_sys_admin"] is False


def test_root_inside_is_unprivileged_outside_and_sees_only_the_runtime(offline: _Offline,
                                                                        needs_namespaces: None) -> None:
    result = offline.result
    facts = _facts(result)
    assert facts["uid"] == 0
    owner = (result.output_dir / "facts.json").stat().st_uid
    assert owner == (UNPRIVILEGED_ID if os.geteuid() == 0 else os.geteuid())
    runtime_tops = {Path(p).parts[1] for p in runtime_dirs()}
    allowed = {"bin", "dev", "etc", "kaggle", "lib", "lib32", "lib64", "libx32", "opt", "proc", "root", "run",
               "sbin", "sys", "tmp", "usr"} | runtime_tops
    attacks = facts["attacks"]
    assert set(attacks["root_entries"]) <= allowed, set(attacks["root_entries"]) - allowed
    # Nothing of this machine's home shows (the same name may: the session's own ~/.ipython, or the folder a Python
    # under ~/.pyenv is mounted in), except a runtime folder right in it.
    home = Path.home()
    runtime_in_home = {Path(p).relative_to(home).parts[0] for p in runtime_dirs() if Path(p).is_relative_to(home)}
    seen = {name for name, (dev, ino) in attacks["home_entries"].items()
            if (home / name).exists() and ((home / name).lstat().st_dev, (home / name).lstat().st_ino) == (dev, ino)}
    assert seen <= runtime_in_home, seen


def test_kernel_sees_kaggle_and_sim_variables_but_no_host_credentials(offline: _Offline,
                                                                     needs_namespaces: None) -> None:
    env = _facts(offline.result)["env"]
    assert env["KAGGLE_KIT_SIM_ACCELERATOR"] == "T4x2"
    assert float(env["KAGGLE_KIT_SIM_SESSION_LIMIT_S"]) == 12 * 60.0
    assert float(env["KAGGLE_KIT_SIM_QUOTA_LEFT_S"]) == 30 * 60.0
    assert abs(float(env["KAGGLE_KIT_SIM_SESSION_START"]) - time.time()) < 600
    assert env["KAGGLE_KERNEL_RUN_TYPE"] == "Batch"
    assert env["KAGGLE_URL_BASE"] and env["KAGGLE_DATA_PROXY_URL"] and env["KAGGLE_USER_SECRETS_TOKEN"]
    assert env["KAGGLE_KEY"] is None and env["KAGGLE_USERNAME"] is None


def test_secrets_only_through_the_stand_in(offline: _Offline, needs_namespaces: None) -> None:
    result = offline.result
    facts = _facts(result)
    assert facts["secret_sha"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert facts["secret_in_env"] is False
    assert "NOT_ATTACHED" in facts["missing_secret"] and "API_KEY" in facts["missing_secret"]
    store = facts["env"]["KAGGLE_KIT_SIM_SECRETS_FILE"]
    assert not store.startswith("/kaggle")  # outside the tree, so never in the output
    assert not (result.session_dir / "private").exists()  # gone with the session
    assert result.output_dir is not None
    for folder in (result.output_dir, result.session_dir):
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert SECRET.encode() not in content, path
                assert HOST_KEY.encode() not in content, path


def test_batch_output_is_kept_with_kaggles_files_and_the_tree_removed(offline: _Offline,
                                                                        needs_namespaces: None) -> None:
    result = offline.result
    facts = _facts(result)
    assert result.output_dir is not None and result.output_dir.parent.name == "outputs"
    assert (result.output_dir / "copy.txt").read_text() == facts["current"]
    assert (result.output_dir / "inside_link").read_text() == facts["current"]
    assert not (result.output_dir / "outside_link").is_symlink()  # never a way out to the host's files
    assert not (result.session_dir / "kaggle").exists()
    executed = nbformat.read(str(result.executed_notebook), as_version=4)
    assert all(cell.execution_count for cell in executed.cells)
    assert result.gpu_s == pytest.approx(result.wall_s * 60 * 2)  # T4x2 burns quota at twice the (scaled) wall time
    # Kaggle's own files beside the notebook's: the executed notebook, the rendered results, the summary.
    names = {p.name for p in result.output_dir.iterdir()}
    assert {"__notebook__.ipynb", "__results__.html", "custom.css", "__output__.json"} <= names
    assert "__script__.py" not in names
    copy = nbformat.read(str(result.output_dir / "__notebook__.ipynb"), as_version=4)
    assert len(copy.cells) == len(executed.cells) and all(cell.execution_count for cell in copy.cells)
    assert "to the log" in (result.output_dir / "__results__.html").read_text()
    summary = json.loads((result.output_dir / "__output__.json").read_text())
    assert summary["status"] == "COMPLETE" and summary["runType"] == "Batch"
    assert "facts.json" in summary["files"] and "__notebook__.ipynb" not in summary["files"]


def test_the_log_holds_only_what_the_notebook_printed(offline: _Offline, needs_namespaces: None) -> None:
    result = offline.result
    records = json.loads(result.log_path.read_text())
    assert any(r["data"] == "to the log\n" and r["stream_name"] == "stdout" for r in records)
    assert not any("kaggle-kit sandbox" in r["data"] for r in records)
    sandbox_log = result.sandbox_log_path.read_text()
    assert "isolation: root inside its own user namespace" in sandbox_log
    assert "session COMPLETE after" in sandbox_log


def test_interactive_session_with_internet_loses_its_working_folder(tmp_path: Path, listener: _Listener) -> None:
    url = f"http://127.0.0.1:{listener.port}"
    cells = (
        "import json, os\nFACTS = {}",
        _PROBE_SOCKET,
        "open(os.environ.get('KAGGLE_KIT_KAGGLE_ROOT', '/kaggle') + '/working/model.bin', 'wb').write(b'w')\n"
        "FACTS['endpoint'] = os.environ.get('KAGGLE_KIT_API_ENDPOINT')\n"
        "FACTS['proxy'] = os.environ.get('HTTP_PROXY')\n"
        "FACTS['run_type'] = os.environ['KAGGLE_KERNEL_RUN_TYPE']\n"
        "import helper\nFACTS['helper'] = helper.VALUE\n"
        "print(json.dumps(FACTS))",
    )
    spec = SessionSpec(_notebook(*cells), run_type="Interactive", internet=True, api_url=url,
                       env={"PROBE_PORT": str(listener.port)}, cwd_files={"helper.py": b"VALUE = 41\n"})
    box: dict[str, SessionResult] = {}
    # The API stand-in runs sessions from a background thread: do the same.
    worker = threading.Thread(target=lambda: box.update(result=Sandbox(tmp_path / "work").run(spec)))
    worker.start()
    worker.join()
    result = box["result"]
    assert result.status == "COMPLETE", result.failure_message
    assert result.output_dir is None
    assert not (result.session_dir / "kaggle").exists()
    assert not (tmp_path / "work" / "outputs").exists() or not any((tmp_path / "work" / "outputs").iterdir())
    executed = nbformat.read(str(result.executed_notebook), as_version=4)
    facts = json.loads(executed.cells[-1].outputs[0]["text"])
    assert facts == {"socket": "connected", "endpoint": url, "proxy": url, "run_type": "Interactive", "helper": 41}


# A progress file as the kit's training loop writes it (replaced atomically), for the kill at a step.
_PROGRESS = (
    "def progress(step):\n"
    "    with open(W + '/.progress.tmp', 'w') as fh:\n"
    "        fh.write('{\"status\": \"running\", \"step\": %d}' % step)\n"
    "    os.replace(W + '/.progress.tmp', W + '/progress.json')"
)
_KILL_CELLS = (
    # No warning before the kill: a SIGTERM handler would leave this file behind.
    "import os, signal, subprocess, sys, time\n"
    "W = os.environ.get('KAGGLE_KIT_KAGGLE_ROOT', '/kaggle') + '/working'\n"
    "signal.signal(signal.SIGTERM, lambda *a: open(W + '/got_sigterm', 'w').close())\n"
    "writer = \"import time\\nwhile True:\\n    open(%r + '/tick_%%d' %% time.time_ns(), 'w').close()\\n"
    "    time.sleep(0.02)\" % W\n"
    "plain = subprocess.Popen([sys.executable, '-c', writer])\n"
    "detached = subprocess.Popen([sys.executable, '-c', writer.replace('tick_', 'dtick_')], start_new_session=True)\n"
    "open(W + '/pids', 'w').write(f'{os.getpid()} {plain.pid} {detached.pid}')\n"
    "open(W + '/pidns', 'w').write(os.readlink('/proc/self/ns/pid'))\n"
    + _PROGRESS,
    # Step 1 is reached once both writers have ticked: the kill is placed by progress, whatever the machine's speed.
    "while not {n.split('_')[0] for n in os.listdir(W) if 'tick_' in n} >= {'tick', 'dtick'}:\n"
    "    time.sleep(0.02)\n"
    "progress(1)\n"
    "while True:\n    time.sleep(0.05)",
    "open(W + '/after.txt', 'w').close()",
)


def _pid_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def test_a_kill_is_sigkill_of_every_process(tmp_path: Path) -> None:
    # The time limit is only a safety net: without the kill at step 1 the session would run until it.
    spec = SessionSpec(_notebook(*_KILL_CELLS), run_type="Batch", kill_at_step=1, time_limit_s=600)
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "KILLED" and result.killed_by == "step", result.failure_message
    assert result.killed_at_step == 1 and "kill at step 1" in (result.failure_message or "")
    assert result.killed_at is not None and result.gpu_s == 0.0
    assert result.output_dir is not None
    names = sorted(p.name for p in result.output_dir.iterdir())
    if result.isolation == "namespace":
        # The pids are the session's own; on this machine, no process is left in the session's PID namespace.
        pidns = (result.output_dir / "pidns").read_text()
        assert pidns != os.readlink("/proc/self/ns/pid")
        assert not [p for p in os.listdir("/proc") if p.isdigit() and not _dead(int(p)) and _pid_ns(p) == pidns]
    else:
        pids = [int(p) for p in (result.output_dir / "pids").read_text().split()]
        assert all(_dead(pid) for pid in pids), [(pid, _dead(pid)) for pid in pids]
    assert "got_sigterm" not in names and "after.txt" not in names
    ticks = [int(name.split("_")[1]) / 1e9 for name in names if "tick_" in name]
    assert ticks and any(name.startswith("dtick_") for name in names)
    assert max(ticks) <= result.killed_at
    time.sleep(0.3)
    assert sorted(p.name for p in result.output_dir.iterdir()) == names  # nothing writes there any more


def test_a_kill_at_a_step_waits_for_that_step_and_reads_as_kaggles_stop(tmp_path: Path) -> None:
    from kaggle_kit.session_outcome import KILLED, classify

    # The steps come slowly at first: a kill by seconds would land anywhere, the kill at step 5 lands at step 5 or
    # a few steps after it, never before.
    cells = ("import os, time\nW = os.environ.get('KAGGLE_KIT_KAGGLE_ROOT', '/kaggle') + '/working'\n" + _PROGRESS,
             "os.makedirs(W + '/run', exist_ok=True)\nW = W + '/run'\n"
             "for step in range(1, 3000):\n"
             "    time.sleep(0.2 if step < 5 else 0.01)\n"
             "    print('step', step, flush=True)\n"
             "    progress(step)",
             "open(W + '/after.txt', 'w').close()")
    spec = SessionSpec(_notebook(*cells), run_type="Batch", kill_at_step=5)
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "KILLED" and result.killed_by == "step", result.failure_message
    assert result.killed_at_step is not None and result.killed_at_step >= 5
    assert result.output_dir is not None and not (result.output_dir / "run" / "after.txt").exists()
    reached = json.loads((result.output_dir / "run" / "progress.json").read_text())["step"]
    assert 5 <= result.killed_at_step <= reached < 2999
    # What the stand-in reports for it: Kaggle's stop, with no failure message and the log as far as it got.
    log = result.log_path.read_text()
    printed = "".join(record["data"] for record in json.loads(log))
    assert "step 5\n" in printed and "Session killed" not in log
    outcome = classify({"status": "CANCEL_ACKNOWLEDGED", "failureMessage": ""}, log, ["progress.json"])
    assert outcome.kind == KILLED and outcome.output_kept


@pytest.mark.parametrize("value", [-1, 2.5, True, "3"])
def test_a_kill_at_step_that_is_no_step_is_refused(tmp_path: Path, value: object) -> None:
    with pytest.raises(SandboxError, match="kill_at_step"):
        Sandbox(tmp_path / "work").run(SessionSpec(_notebook("1"), kill_at_step=value))  # type: ignore[arg-type]


def test_the_time_limit_kills_the_session(tmp_path: Path) -> None:
    # 3 h at clock scale 3600 is 3 s; whenever the kernel gets going on a slow machine, the limit ends it.
    spec = SessionSpec(_notebook("import time\nwhile True:\n    time.sleep(0.05)"), run_type="Batch",
                       time_limit_s=3 * 3600, clock_scale=3600)
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "KILLED" and result.killed_by == "time", result.failure_message
    assert "time limit (10800 s)" in (result.failure_message or "") and result.killed_at_step is None
    assert result.wall_s >= 3 and result.output_dir is not None


def test_gpu_quota_running_out_kills_the_session(tmp_path: Path) -> None:
    # 8 h of quota at 2x burn and clock scale 3600: the quota lasts 4 s, well before the 12 h (12 s) limit.
    spec = SessionSpec(_notebook("import time\nwhile True:\n    time.sleep(0.05)"), accelerator="T4x2",
                       time_limit_s=12 * 3600, clock_scale=3600, quota_left_s=8 * 3600)
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "KILLED" and result.killed_by == "quota", result.failure_message
    assert result.gpu_s == pytest.approx(8 * 3600)


def test_cell_error_and_env_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KIT_SIM_ISOLATION", "env")
    cells = (
        "import json, os\nimport kaggle_kit.env as kenv\n"
        "(kenv.working_dir() / 'seen.json').write_text(json.dumps({\n"
        "    'root': os.environ.get('KAGGLE_KIT_KAGGLE_ROOT'), 'cwd': os.getcwd(),\n"
        "    'data': (kenv.input_dir() / 'tiny' / 'v.txt').read_text()}))",
        "x = 1\nraise ValueError('bad value in cell 2')",
        "(kenv.working_dir() / 'after.txt').write_text('ran')",
    )
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "v.txt").write_text("42")
    result = Sandbox(tmp_path / "work").run(SessionSpec(_notebook(*cells), mounts=(InputMount(data, "path", "tiny"),)))
    assert result.status == "ERROR"
    assert result.failed_cell == 1
    assert "ValueError: bad value in cell 2" in (result.failure_message or "")
    assert "cell 2 of 3" in (result.failure_message or "")
    assert result.isolation == "env" and result.isolation_note
    assert result.output_dir is not None and not (result.output_dir / "after.txt").exists()
    seen = json.loads((result.output_dir / "seen.json").read_text())
    assert seen["root"] == str(result.session_dir / "kaggle")
    assert seen["cwd"] == str(result.session_dir / "kaggle" / "working")
    assert seen["data"] == "42"
    # Said loudly where the notebook's reader looks (Kaggle's log) and in the sandbox's own log.
    log = result.log_path.read_text()
    assert "FALLBACK, NOT isolated" in log and "KAGGLE_KIT_KAGGLE_ROOT" in log
    sandbox_log = result.sandbox_log_path.read_text()
    assert "FALLBACK, NOT isolated" in sandbox_log
    assert "session ERROR after" in sandbox_log


def test_cli_runs_a_jupytext_script_with_inputs_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str],
                                                            needs_namespaces: None) -> None:
    comp = tmp_path / "tiny-comp"
    comp.mkdir()
    (comp / "sample_submission.csv").write_text("id,label\n")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "last.pt").write_text("w")
    script = tmp_path / "job.py"
    script.write_text(
        "# %%\nimport json, os\nfrom kaggle_secrets import UserSecretsClient\n"
        "print(json.dumps({'token_len': len(UserSecretsClient().get_secret('HF_TOKEN')),\n"
        "    'comp': sorted(os.listdir('/kaggle/input/tiny-comp')),\n"
        "    'current': os.path.isdir('/kaggle/input/competitions/tiny-comp'),\n"
        "    'ckpt': [os.path.isfile(p + '/last.pt')\n"
        "             for p in ('/kaggle/input/ckpt', '/kaggle/input/datasets/me/ckpt', '/kaggle/input/extra/ckpt')],\n"
        "    'limit': os.environ['KAGGLE_KIT_SIM_SESSION_LIMIT_S']}))\n"
        "# %%\nraise RuntimeError('boom')\n"
    )
    monkeypatch.setenv("MY_HF_TOKEN", "hf_" + "x" * 20)
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    args = parser.parse_args([
        str(script), "--type", "Interactive", "--no-internet", "--time-limit", "12h", "--clock-scale", "3600",
        "--competition", str(comp), "--dataset", f"{ckpt}:me/ckpt", "--input", f"{ckpt}:extra/ckpt",
        "--input-layout", "legacy", "--secret", "HF_TOKEN=MY_HF_TOKEN", "--workdir", str(tmp_path / "work"),
    ])
    code = run_command(args)
    out, err = capsys.readouterr()
    assert code == 1
    assert "RuntimeError: boom" in err
    assert "output: none" in out
    executed = Path(out.split("executed notebook: ")[1].splitlines()[0])
    log = Path(out.split("log: ")[1].splitlines()[0])
    assert log.is_file()
    facts = json.loads(nbformat.read(str(executed), as_version=4).cells[0].outputs[0]["text"])
    # The legacy layout only: /kaggle/input/<slug>; a --input path is where it was asked for under either layout.
    assert facts == {"token_len": 23, "comp": ["sample_submission.csv"], "current": False,
                     "ckpt": [True, False, True], "limit": "12"}


def test_cli_secret_from_a_missing_variable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(SandboxError, match="NOPE_NOT_SET is not set"):
        secrets_from_args(["HF_TOKEN=NOPE_NOT_SET"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"run_type": "Commit"}, "run_type"),
        ({"clock_scale": 0}, "clock_scale"),
        ({"mounts": (InputMount(Path("/nonexistent-kaggle-kit"), "dataset", "a/x"),)}, "not a folder"),
        ({"mounts": (InputMount(Path("/"), "dataset", "no-owner"),)}, "dataset handle 'no-owner' is not owner/slug"),
        ({"mounts": (InputMount(Path("/"), "kernel", "a/b"),)}, "kind 'kernel'"),
        ({"input_layout": "nested"}, "input_layout"),
        ({"kernel_type": "rmarkdown"}, "kernel_type"),
        ({"notebook": Path("/nonexistent-kaggle-kit/nb.ipynb")}, "does not exist"),
        ({"isolation": "docker"}, "isolation"),
        ({"cwd_files": {"util.py": Path("/nonexistent-kaggle-kit/util.py")}}, "not a file"),
        ({"session_id": "../escape"}, "session_id"),
    ],
)
def test_bad_specs_are_refused_before_anything_runs(tmp_path: Path, changes: dict, message: str) -> None:
    spec = SessionSpec(**{"notebook": _notebook("1"), **changes})
    with pytest.raises(SandboxError, match=message):
        Sandbox(tmp_path / "work").run(spec)
    assert not (tmp_path / "work" / "sessions").exists()


def test_a_session_id_is_never_reused(tmp_path: Path) -> None:
    (tmp_path / "work" / "outputs" / "v1").mkdir(parents=True)
    with pytest.raises(SandboxError, match="already exists"):
        Sandbox(tmp_path / "work").run(SessionSpec(_notebook("1"), session_id="v1"))
    assert not (tmp_path / "work" / "sessions" / "v1").exists()


def test_overlapping_and_escaping_input_targets_are_refused(tmp_path: Path) -> None:
    for mounts in ([("path", "a"), ("path", "a/b")], [("path", "../etc")], [("path", "/abs")],
                   [("dataset", "alice/x"), ("path", "datasets/alice")]):
        spec = SessionSpec(_notebook("1"), mounts=tuple(InputMount(tmp_path, kind, ref) for kind, ref in mounts))
        with pytest.raises(SandboxError, match="target"):
            Sandbox(tmp_path / "work").run(spec)


def test_input_targets_follow_the_layout() -> None:
    source = Path("/data")
    kinds = {"dataset": "alice/ckpt", "competition": "comp", "notebook": "bob/train",
             "model": "google/gemma/pytorch/2b/3"}
    current = {kind: InputMount(source, kind, ref).target("current") for kind, ref in kinds.items()}
    legacy = {kind: InputMount(source, kind, ref).target("legacy") for kind, ref in kinds.items()}
    assert current == {"dataset": "datasets/alice/ckpt", "competition": "competitions/comp",
                       "notebook": "notebooks/bob/train", "model": "models/google/gemma/pytorch/2b/3"}
    assert legacy == {"dataset": "ckpt", "competition": "comp", "notebook": "train", "model": "gemma/pytorch/2b/3"}
    # Two inputs with one slug collide only under the legacy layout.
    twins = (InputMount(source, "dataset", "alice/x"), InputMount(source, "competition", "x"))
    assert len({m.target("current") for m in twins}) == 2 and len({m.target("legacy") for m in twins}) == 1


def test_an_installed_kit_is_hidden_from_the_sessions_site_packages(tmp_path: Path) -> None:
    """Editable or not, the kit's own entries never show in a session; everything else does (the client too)."""
    site = tmp_path / "site-packages"
    kit_dirs, kit_files = ["kaggle_kit", "kaggle_kit-0.1.0.dist-info"], [
        "__editable__.kaggle_kit-0.1.0.pth", "__editable___kaggle_kit_0_1_0_finder.py", "kaggle_kit.egg-link"]
    other_dirs, other_files = ["kaggle", "kagglesdk", "kagglehub", "kaggle_kitchen", "numpy"], ["easy-install.pth"]
    for name in kit_dirs + other_dirs:
        (site / name).mkdir(parents=True)
    for name in kit_files + other_files:
        (site / name).touch()
    others = other_dirs + other_files
    steps = site_dir_without_kit(str(site))
    assert steps[0] == {"op": "tmpfs", "target": str(site), "mode": "0755"} and steps[-1]["op"] == "read_only"
    assert sorted(Path(step["target"]).name for step in steps[1:-1]) == sorted(others)
    (site / "numpy" / "core").mkdir()
    assert site_dir_without_kit(str(site / "numpy")) == []  # nothing of the kit there: shown as it is


def test_parse_duration() -> None:
    assert parse_duration("12h") == 43200
    assert parse_duration("90s") == parse_duration("90") == 90
    assert parse_duration("1h30m") == 5400
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")

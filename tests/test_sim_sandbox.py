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
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from kaggle_kit.commands.sim import add_run_arguments, parse_duration, run_command, secrets_from_args
from kaggle_kit.errors import SandboxError
from kaggle_kit.sim.sandbox import InputMount, Sandbox, SessionResult, SessionSpec, namespace_problem

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's kill and probes use /proc")

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
_OFFLINE_CELLS = (
    "import errno, hashlib, json, os\nFACTS = {'cwd': os.getcwd()}",
    # literal /kaggle paths, both input layouts
    "FACTS['current'] = open('/kaggle/input/datasets/alice/tiny/values.txt').read()\n"
    "FACTS['legacy'] = open('/kaggle/input/tiny/values.txt').read()\n"
    "open('/kaggle/working/copy.txt', 'w').write(FACTS['current'])\n"
    "os.symlink('copy.txt', '/kaggle/working/inside_link')\n"
    "os.symlink('/etc/hostname', '/kaggle/working/outside_link')\n"
    "open('/kaggle/temp/scratch.txt', 'w').write('scratch')\n"
    "FACTS['temp'] = open('/kaggle/temp/scratch.txt').read()",
    # input is read-only, at its root and inside a mounted input
    "def try_write(path):\n"
    "    try:\n"
    "        open(path, 'w').write('x')\n"
    "        return 'written'\n"
    "    except OSError as exc:\n"
    "        return errno.errorcode.get(exc.errno, str(exc.errno))\n"
    "FACTS['write_input_root'] = try_write('/kaggle/input/new.txt')\n"
    "FACTS['write_input_dataset'] = try_write('/kaggle/input/tiny/new.txt')\n"
    "FACTS['write_input_current'] = try_write('/kaggle/input/datasets/alice/tiny/values.txt')",
    _PROBE_SOCKET,
    "FACTS['env'] = {k: os.environ.get(k) for k in ('KAGGLE_KIT_SIM_ACCELERATOR', 'KAGGLE_KIT_SIM_SESSION_LIMIT_S',\n"
    "    'KAGGLE_KIT_SIM_QUOTA_LEFT_S', 'KAGGLE_KIT_SIM_SESSION_START', 'KAGGLE_KERNEL_RUN_TYPE', 'KAGGLE_KEY',\n"
    "    'KAGGLE_USERNAME', 'KAGGLE_KIT_KAGGLE_ROOT', 'KAGGLE_KIT_API_ENDPOINT', 'KAGGLE_USER_SECRETS_TOKEN',\n"
    "    'KAGGLE_URL_BASE', 'KAGGLE_DATA_PROXY_URL', 'KAGGLE_KIT_SIM_SECRETS_FILE')}",
    "from kaggle_secrets import UserSecretsClient, BackendError\n"
    "secret = UserSecretsClient().get_secret('API_KEY')\n"
    "FACTS['secret_sha'] = hashlib.sha256(secret.encode()).hexdigest()\n"
    "FACTS['secret_in_env'] = any(secret in v for v in os.environ.values())\n"
    "try:\n"
    "    UserSecretsClient().get_secret('NOT_ATTACHED')\n"
    "except BackendError as exc:\n"
    "    FACTS['missing_secret'] = str(exc)",
    "import kaggle_kit.env\nFACTS['kit_working_dir'] = str(kaggle_kit.env.working_dir())\n"
    "json.dump(FACTS, open('/kaggle/working/facts.json', 'w'))",
)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, listener: _Listener) -> Iterator[tuple[SessionResult, Path]]:
    """One Batch session without internet, on a simulated T4x2, with an input, a secret and host credentials set."""
    root = tmp_path_factory.mktemp("offline")
    data = root / "tiny"
    data.mkdir()
    (data / "values.txt").write_text("1,2,3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KAGGLE_USERNAME", "host-user")
        mp.setenv("KAGGLE_KEY", HOST_KEY)
        mp.delenv("KAGGLE_KIT_SIM_ISOLATION", raising=False)
        spec = SessionSpec(
            _notebook(*_OFFLINE_CELLS),
            run_type="Batch",
            mounts=(InputMount(data, ("datasets/alice/tiny", "tiny")),),
            internet=False,
            accelerator="T4x2",
            time_limit_s=12 * 3600,
            clock_scale=3600,
            quota_left_s=30 * 3600,
            secrets={"API_KEY": SECRET},
            env={"PROBE_PORT": str(listener.port)},
        )
        result = Sandbox(root / "work").run(spec)
    yield result, data


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


def test_literal_kaggle_paths_work(offline: tuple[SessionResult, Path], needs_namespaces: None) -> None:
    result, _ = offline
    facts = _facts(result)
    assert result.isolation == "namespace"
    assert facts["cwd"] == "/kaggle/working"
    assert facts["current"] == facts["legacy"] == "1,2,3"
    assert facts["temp"] == "scratch"
    assert facts["env"]["KAGGLE_KIT_KAGGLE_ROOT"] is None
    assert facts["kit_working_dir"] == "/kaggle/working"


def test_input_is_read_only(offline: tuple[SessionResult, Path], needs_namespaces: None) -> None:
    result, data = offline
    facts = _facts(result)
    assert facts["write_input_root"] == "EROFS"
    assert facts["write_input_dataset"] == "EROFS"
    assert facts["write_input_current"] == "EROFS"
    assert sorted(p.name for p in data.iterdir()) == ["values.txt"]
    assert (data / "values.txt").read_text() == "1,2,3"


def test_internet_off_cannot_reach_the_host(offline: tuple[SessionResult, Path], needs_namespaces: None) -> None:
    result, _ = offline
    facts = _facts(result)
    assert result.internet_blocked
    assert facts["socket"] == "ConnectionRefusedError"
    assert facts["env"]["KAGGLE_KIT_API_ENDPOINT"] is None


def test_kernel_sees_kaggle_and_sim_variables_but_no_host_credentials(offline: tuple[SessionResult, Path], needs_namespaces: None) -> None:
    result, _ = offline
    env = _facts(result)["env"]
    assert env["KAGGLE_KIT_SIM_ACCELERATOR"] == "T4x2"
    assert float(env["KAGGLE_KIT_SIM_SESSION_LIMIT_S"]) == 12.0
    assert float(env["KAGGLE_KIT_SIM_QUOTA_LEFT_S"]) == 30.0
    assert abs(float(env["KAGGLE_KIT_SIM_SESSION_START"]) - time.time()) < 600
    assert env["KAGGLE_KERNEL_RUN_TYPE"] == "Batch"
    assert env["KAGGLE_URL_BASE"] and env["KAGGLE_DATA_PROXY_URL"] and env["KAGGLE_USER_SECRETS_TOKEN"]
    assert env["KAGGLE_KEY"] is None and env["KAGGLE_USERNAME"] is None


def test_secrets_only_through_the_stand_in(offline: tuple[SessionResult, Path], needs_namespaces: None) -> None:
    result, _ = offline
    facts = _facts(result)
    assert facts["secret_sha"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert facts["secret_in_env"] is False
    assert "NOT_ATTACHED" in facts["missing_secret"] and "API_KEY" in facts["missing_secret"]
    store = facts["env"]["KAGGLE_KIT_SIM_SECRETS_FILE"]
    assert not store.startswith("/kaggle") and not Path(store).exists()  # outside the tree, gone after the session
    assert result.output_dir is not None
    for folder in (result.output_dir, result.session_dir):
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert SECRET.encode() not in content, path
                assert HOST_KEY.encode() not in content, path


def test_batch_output_is_kept_and_the_tree_removed(offline: tuple[SessionResult, Path], needs_namespaces: None) -> None:
    result, _ = offline
    facts = _facts(result)
    assert result.output_dir is not None and result.output_dir.parent.name == "outputs"
    assert (result.output_dir / "copy.txt").read_text() == facts["current"]
    assert (result.output_dir / "inside_link").read_text() == facts["current"]
    assert not (result.output_dir / "outside_link").is_symlink()  # never a way out to the host's files
    assert not (result.session_dir / "kaggle").exists()
    executed = nbformat.read(str(result.executed_notebook), as_version=4)
    assert all(cell.execution_count for cell in executed.cells)
    assert result.gpu_s == pytest.approx(result.wall_s * 3600 * 2)  # T4x2 burns quota at twice the wall time


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


_KILL_CELLS = (
    # No warning before the kill: a SIGTERM handler would leave this file behind.
    "import os, signal, subprocess, sys, time\n"
    "W = os.environ.get('KAGGLE_KIT_KAGGLE_ROOT', '/kaggle') + '/working'\n"
    "signal.signal(signal.SIGTERM, lambda *a: open(W + '/got_sigterm', 'w').close())\n"
    "writer = \"import time\\nwhile True:\\n    open(%r + '/tick_%%d' %% time.time_ns(), 'w').close()\\n"
    "    time.sleep(0.02)\" % W\n"
    "plain = subprocess.Popen([sys.executable, '-c', writer])\n"
    "detached = subprocess.Popen([sys.executable, '-c', writer.replace('tick_', 'dtick_')], start_new_session=True)\n"
    "open(W + '/pids', 'w').write(f'{os.getpid()} {plain.pid} {detached.pid}')",
    "while True:\n    time.sleep(0.05)",
    "open(W + '/after.txt', 'w').close()",
)


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


@pytest.mark.slow
def test_kill_at_the_time_limit_is_sigkill_of_every_process(tmp_path: Path) -> None:
    spec = SessionSpec(_notebook(*_KILL_CELLS), run_type="Batch", time_limit_s=5 * 3600, clock_scale=3600)
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "KILLED" and result.killed_by == "time", result.failure_message
    assert result.killed_at is not None and result.gpu_s == 0.0
    assert result.output_dir is not None
    names = sorted(p.name for p in result.output_dir.iterdir())
    pids = [int(p) for p in (result.output_dir / "pids").read_text().split()]
    assert all(_dead(pid) for pid in pids), [(pid, _dead(pid)) for pid in pids]
    assert "got_sigterm" not in names and "after.txt" not in names
    ticks = [int(name.split("_")[1]) / 1e9 for name in names if "tick_" in name]
    assert ticks and any(name.startswith("dtick_") for name in names)
    assert max(ticks) <= result.killed_at
    time.sleep(0.3)
    assert sorted(p.name for p in result.output_dir.iterdir()) == names  # nothing writes there any more
    assert "time limit" in (result.failure_message or "")


@pytest.mark.slow
def test_gpu_quota_running_out_kills_the_session(tmp_path: Path) -> None:
    # 8 h of quota at 2x burn and clock scale 3600: the quota lasts 4 s, well before the 12 h (12 s) limit.
    spec = SessionSpec(_notebook("import time\nwhile True:\n    time.sleep(0.05)"), accelerator="T4x2",
                       time_limit_s=12 * 3600, clock_scale=3600, quota_left_s=8 * 3600)
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "KILLED" and result.killed_by == "quota", result.failure_message
    assert result.gpu_s == pytest.approx(8 * 3600)
    assert result.wall_s < 12


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
    result = Sandbox(tmp_path / "work").run(SessionSpec(_notebook(*cells), mounts=(InputMount(data, ("tiny",)),)))
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
    log = result.log_path.read_text()
    assert "FALLBACK" in log and "KAGGLE_KIT_KAGGLE_ROOT" in log
    assert json.loads(log)[-1]["data"].startswith("[kaggle-kit sandbox] session ERROR")


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
        "    'comp': sorted(os.listdir('/kaggle/input/competitions/tiny-comp')),\n"
        "    'legacy': os.path.isdir('/kaggle/input/tiny-comp'),\n"
        "    'ckpt': [os.path.isfile(p + '/last.pt')\n"
        "             for p in ('/kaggle/input/datasets/me/ckpt', '/kaggle/input/ckpt')],\n"
        "    'limit': os.environ['KAGGLE_KIT_SIM_SESSION_LIMIT_S']}))\n"
        "# %%\nraise RuntimeError('boom')\n"
    )
    monkeypatch.setenv("MY_HF_TOKEN", "hf_" + "x" * 20)
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    args = parser.parse_args([
        str(script), "--type", "Interactive", "--no-internet", "--time-limit", "12h", "--clock-scale", "3600",
        "--competition", str(comp), "--input", f"{ckpt}:datasets/me/ckpt,ckpt", "--secret", "HF_TOKEN=MY_HF_TOKEN",
        "--workdir", str(tmp_path / "work"),
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
    assert facts == {"token_len": 23, "comp": ["sample_submission.csv"], "legacy": True, "ckpt": [True, True],
                     "limit": "12"}


def test_cli_secret_from_a_missing_variable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(SandboxError, match="NOPE_NOT_SET is not set"):
        secrets_from_args(["HF_TOKEN=NOPE_NOT_SET"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"run_type": "Commit"}, "run_type"),
        ({"clock_scale": 0}, "clock_scale"),
        ({"mounts": (InputMount(Path("/nonexistent-kaggle-kit"), ("x",)),)}, "not a folder"),
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
    for targets in (("a", "a/b"), ("../etc",), ("/abs",)):
        spec = SessionSpec(_notebook("1"), mounts=(InputMount(tmp_path, targets),))
        with pytest.raises(SandboxError, match="target"):
            Sandbox(tmp_path / "work").run(spec)


def test_parse_duration() -> None:
    assert parse_duration("12h") == 43200
    assert parse_duration("90s") == parse_duration("90") == 90
    assert parse_duration("1h30m") == 5400
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")

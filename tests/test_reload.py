"""Hot reloader: cells in a real IPython kernel with files edited on disk between them, plus in-process details."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kaggle_kit.errors import ReloadError

reload_mod = importlib.import_module("kaggle_kit.hotreload.reloader")


def put(path: Path, text: str, *, git_pull: bool = False) -> None:
    """Write a source file; ``git_pull`` replaces it as git does: a new file renamed over it, an older mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(text).lstrip("\n")
    if not git_pull:
        path.write_text(text)
        return
    before = path.stat()
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(text)
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns - 3_600 * 10**9))
    os.replace(fresh, path)


# --------------------------------------------------------------------------- in a real kernel

@dataclass
class Cell:
    out: str
    err: str
    error: str

    @property
    def text(self) -> str:
        return self.out + self.err + self.error


class Kernel:
    """A real ipykernel driven through jupyter_client."""

    def __init__(self, root: Path, home: Path) -> None:
        from jupyter_client.manager import KernelManager

        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "JPY_"))}
        env.update(IPYTHONDIR=str(home / "ipython"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                   PYTHONDONTWRITEBYTECODE="")
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env, cwd=str(root))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str) -> Cell:
        out: list[str] = []
        err: list[str] = []
        error: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(content["data"].get("text/plain", "") + "\n")
            elif kind == "error":
                error.append(f"{content['ename']}: {content['evalue']}")

        self.client.execute_interactive(textwrap.dedent(code), output_hook=hook, timeout=120)
        return Cell("".join(out), "".join(err), "".join(error))

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / ".kaggle-kit-root").write_text("")
    return root


@pytest.fixture(scope="module")
def kernel(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(project, tmp_path_factory.mktemp("kernel-home"))
    try:
        setup = k.run(f"""
            import sys
            sys.path.insert(0, {str(project)!r})
            import kaggle_kit
            kaggle_kit.enable_autoreload(roots=[{str(project)!r}])
            print("ready")
        """)
        assert "ready" in setup.out, setup.text
        yield k
    finally:
        k.close()


@pytest.mark.slow
def test_changed_function_runs_new_code(kernel: Kernel, project: Path) -> None:
    put(project / "k_func/__init__.py", "")
    put(project / "k_func/m.py", """
        def f():
            return "old"
    """)
    assert "old" in kernel.run("from k_func.m import f\nprint(f())").out
    put(project / "k_func/m.py", """
        def f():
            return "new!"
    """)
    cell = kernel.run("print(f())")
    assert "new!" in cell.out, cell.text
    assert "reloaded k_func.m: changed f" in cell.out
    assert kernel.run("print('quiet')").text == "quiet\n"  # nothing changed: nothing said


@pytest.mark.slow
def test_changed_method_reaches_live_instance(kernel: Kernel, project: Path) -> None:
    put(project / "k_meth/__init__.py", "")
    put(project / "k_meth/models.py", """
        class Base:
            def tag(self):
                return "base"

        class Net(Base):
            def forward(self):
                return "v1-" + super().tag()
    """)
    assert "v1-base" in kernel.run("from k_meth.models import Net\nnet = Net()\nprint(net.forward())").out
    put(project / "k_meth/models.py", """
        class Base:
            def tag(self):
                return "base"

        class Net(Base):
            def forward(self):
                return "v2-" + super().tag()

            def extra(self):
                return "extra"
    """)
    cell = kernel.run("print(net.forward(), net.extra(), isinstance(net, Net), type(net) is Net)")
    assert "v2-base extra True True" in cell.out, cell.text
    assert "changed Net.forward; added Net.extra" in cell.out


@pytest.mark.slow
def test_new_function_can_be_imported_with_from(kernel: Kernel, project: Path) -> None:
    put(project / "k_new/__init__.py", "")
    put(project / "k_new/util.py", "def a():\n    return 1\n")
    kernel.run("import k_new.util")
    put(project / "k_new/util.py", "def a():\n    return 1\n\n\ndef fresh():\n    return 'fresh'\n")
    cell = kernel.run("from k_new.util import fresh\nprint(fresh())")
    assert "fresh" in cell.out and not cell.error, cell.text
    assert "added fresh" in cell.out


@pytest.mark.slow
def test_changed_constant_is_rebound_in_notebook(kernel: Kernel, project: Path) -> None:
    put(project / "k_const/__init__.py", "")
    put(project / "k_const/cfg.py", "LR = 0.1\nEPOCHS = 3\n")
    kernel.run("from k_const.cfg import LR, EPOCHS as n_epochs\nimport k_const.cfg as cfg")
    put(project / "k_const/cfg.py", "LR = 0.25\nEPOCHS = 7\n")
    cell = kernel.run("print(LR, n_epochs, cfg.LR)")
    assert "0.25 7 0.25" in cell.out, cell.text
    assert "rebound" in cell.out and "in notebook" in cell.out


@pytest.mark.slow
def test_chain_where_only_the_last_changed(kernel: Kernel, project: Path) -> None:
    put(project / "k_chain/__init__.py", "")
    put(project / "k_chain/c.py", "SCALE = 2\n\n\ndef val():\n    return 1\n")
    put(project / "k_chain/b.py", """
        from .c import SCALE, val
        FACTOR = SCALE * 10

        def twice():
            return 2 * val()
    """)
    put(project / "k_chain/a.py", """
        from k_chain.b import FACTOR, twice

        def top():
            return twice() + FACTOR
    """)
    assert "22" in kernel.run("from k_chain.a import top\nprint(top())").out
    put(project / "k_chain/c.py", "SCALE = 3\n\n\ndef val():\n    return 5\n")
    cell = kernel.run("print(top())")
    assert "40" in cell.out, cell.text
    lines = [line for line in cell.out.splitlines() if line.startswith("reloaded")]
    assert [line.split()[1].rstrip(":") for line in lines] == ["k_chain.c", "k_chain.b", "k_chain.a"], cell.text


@pytest.mark.slow
def test_syntax_error_keeps_old_module_then_fix_applies(kernel: Kernel, project: Path) -> None:
    put(project / "k_syntax/__init__.py", "")
    put(project / "k_syntax/m.py", "def f():\n    return 'old'\n")
    kernel.run("from k_syntax.m import f")
    put(project / "k_syntax/m.py", "def f():\n    return 'new'\n\ndef broken(:\n    pass\n")
    cell = kernel.run("print(f())")
    assert "old" in cell.out, cell.text
    assert "reload failed: k_syntax.m: SyntaxError" in cell.err
    assert f"{project / 'k_syntax/m.py'}:4" in cell.err
    assert kernel.run("print(f())").text == "old\n"  # reported once, not before every cell
    put(project / "k_syntax/m.py", "def f():\n    return 'fixed'\n")
    cell = kernel.run("print(f())")
    assert "fixed" in cell.out and "reloaded k_syntax.m" in cell.out, cell.text


@pytest.mark.slow
def test_deleted_module_is_reported_and_kept(kernel: Kernel, project: Path) -> None:
    put(project / "k_gone/__init__.py", "")
    put(project / "k_gone/m.py", "def f():\n    return 'still here'\n")
    kernel.run("from k_gone.m import f")
    (project / "k_gone/m.py").unlink()
    cell = kernel.run("print(f())")
    assert "still here" in cell.out, cell.text
    assert "source deleted: k_gone.m" in cell.out


@pytest.mark.slow
def test_dataclass_field_added_needs_restart(kernel: Kernel, project: Path) -> None:
    put(project / "k_dc/__init__.py", "")
    put(project / "k_dc/cfg.py", """
        from dataclasses import dataclass

        @dataclass
        class Config:
            lr: float = 0.1
    """)
    kernel.run("from k_dc.cfg import Config\nold = Config()")
    put(project / "k_dc/cfg.py", """
        from dataclasses import dataclass

        @dataclass
        class Config:
            lr: float = 0.1
            wd: float = 0.0
    """)
    cell = kernel.run("print(Config().wd)")
    assert "restart needed: fields of dataclass Config changed (added wd)" in cell.err, cell.text
    assert f"{project / 'k_dc/cfg.py'}:3" in cell.err
    assert "0.0" in cell.out


@pytest.mark.slow
def test_git_pull_replacement_with_older_mtime(kernel: Kernel, project: Path) -> None:
    put(project / "k_pull/__init__.py", "")
    put(project / "k_pull/m.py", "def f():\n    return 'before pull'\n")
    kernel.run("from k_pull.m import f")
    put(project / "k_pull/m.py", "def f():\n    return 'after pull'\n", git_pull=True)
    cell = kernel.run("print(f())")
    assert "after pull" in cell.out, cell.text


@pytest.mark.slow
def test_non_editable_install_warns_stale_copy(kernel: Kernel, project: Path,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    put(project / "k_inst/__init__.py", "")
    put(project / "k_inst/m.py", "def f():\n    return 'v1'\n")
    site = tmp_path_factory.mktemp("site") / "site-packages"
    shutil.copytree(project / "k_inst", site / "k_inst")
    cell = kernel.run(f"import sys\nsys.path.insert(0, {str(site)!r})\nfrom k_inst.m import f\nprint(f())")
    assert "v1" in cell.out and "stale" not in cell.text, cell.text
    put(project / "k_inst/m.py", "def f():\n    return 'v2 from git pull'\n", git_pull=True)
    os.utime(project / "k_inst/m.py")  # the pulled file is newer than the installed copy
    cell = kernel.run("print(f())")
    assert "v1" in cell.out, cell.text
    assert f"stale copy: k_inst is imported from {site / 'k_inst'}" in cell.err
    assert f"pip install -e {project}" in cell.err


@pytest.mark.slow
def test_load_ext_turns_autoreload_on_and_unload_ext_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("ext-project")
    (root / ".kaggle-kit-root").write_text("")
    put(root / "k_ext/__init__.py", "")
    put(root / "k_ext/m.py", "def f():\n    return 'old'\n")
    k = Kernel(root, tmp_path_factory.mktemp("ext-home"))  # a fresh kernel: nothing enabled the reloader yet
    try:
        cell = k.run(f"import sys\nsys.path.insert(0, {str(root)!r})\nfrom k_ext.m import f\nprint(f())")
        assert "old" in cell.out, cell.text
        put(root / "k_ext/m.py", "def f():\n    return 'not reloaded: the extension is not loaded'\n")
        assert "old" in k.run("print(f())").out

        cell = k.run("%load_ext kaggle_kit.hotreload")
        assert not cell.error and not cell.err, cell.text
        put(root / "k_ext/m.py", "def f():\n    return 'new!'\n")
        cell = k.run("print(f())")
        assert "new!" in cell.out, cell.text
        assert "reloaded k_ext.m: changed f" in cell.out

        assert not k.run("%unload_ext kaggle_kit.hotreload").error
        put(root / "k_ext/m.py", "def f():\n    return 'after unload'\n")
        cell = k.run("print(f())")
        assert "new!" in cell.out and "reloaded" not in cell.out, cell.text
    finally:
        k.close()


# --------------------------------------------------------------------------- in process

@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, reload_mod.Reloader, dict]]:
    """A project root on sys.path, a reloader watching it, a notebook namespace; modules removed afterwards."""
    root = tmp_path / "proj"
    root.mkdir()
    sys.path.insert(0, str(root))
    before = set(sys.modules)
    reloader = reload_mod.Reloader([root.resolve()])
    reloader.namespace = {}
    try:
        yield root, reloader, reloader.namespace
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def _baseline(reloader: reload_mod.Reloader, *names: str) -> list[types.ModuleType]:
    modules = [importlib.import_module(n) for n in names]
    assert not reloader.check(explicit=False), "the first check must only take the baseline"
    return modules


def test_unchanged_files_are_not_read_and_a_touch_is_not_a_change(tree, monkeypatch) -> None:
    root, reloader, _ = tree
    put(root / "p_fast/__init__.py", "")
    for i in range(5):
        put(root / f"p_fast/m{i}.py", f"X = {i}\n")
    _baseline(reloader, *[f"p_fast.m{i}" for i in range(5)])
    reads: list[str] = []
    real_read = reload_mod._read
    monkeypatch.setattr(reload_mod, "_read", lambda path: reads.append(path) or real_read(path))
    assert not reloader.check(explicit=False)
    assert reads == []
    os.utime(root / "p_fast/m3.py", ns=(1, 1))
    assert not reloader.check(explicit=False)  # stat changed, content did not: hashed, nothing reloaded
    assert reads == [str(root.resolve() / "p_fast/m3.py")]


def test_import_error_is_all_or_nothing_and_retried(tree) -> None:
    root, reloader, _ = tree
    put(root / "p_imp/__init__.py", "")
    put(root / "p_imp/base.py", "A = 1\n")
    put(root / "p_imp/user.py", "from .base import A\n\ndef f():\n    return 'old'\n")
    base, user = _baseline(reloader, "p_imp.base", "p_imp.user")
    put(root / "p_imp/user.py", "EXTRA = 1\nfrom .base import A, B\n\ndef f():\n    return 'new'\n\n\ndef g():\n    pass\n")
    report = reloader.check(explicit=False)
    assert report.failed == ["p_imp.user"]
    assert "ImportError" in report.lines[0] and "user.py:2" in report.lines[0]
    assert user.f() == "old" and not hasattr(user, "EXTRA") and not hasattr(user, "g")
    put(root / "p_imp/base.py", "A = 1\nB = 2\n")
    report = reloader.check(explicit=False)
    assert report.reloaded == ["p_imp.base", "p_imp.user"], report.lines
    assert user.f() == "new" and user.B == 2


def test_modules_reload_after_the_modules_they_import(tree) -> None:
    root, reloader, _ = tree
    put(root / "p_ord/__init__.py", "")
    put(root / "p_ord/z_base.py", "SCALE = 2\n")
    put(root / "p_ord/a_user.py", "from p_ord.z_base import SCALE\nFACTOR = SCALE * 10\n")
    _, user = _baseline(reloader, "p_ord.z_base", "p_ord.a_user")
    put(root / "p_ord/z_base.py", "SCALE = 3\n")
    put(root / "p_ord/a_user.py", "from p_ord.z_base import SCALE\nFACTOR = SCALE * 100\n")
    report = reloader.check(explicit=False)
    assert report.reloaded == ["p_ord.z_base", "p_ord.a_user"]
    assert user.FACTOR == 300


def test_shapes_that_need_a_restart(tree) -> None:
    root, reloader, ns = tree
    put(root / "p_shape/__init__.py", "")
    put(root / "p_shape/m.py", """
        import enum

        class Base: pass
        class Other: pass

        class Child(Base):
            def f(self):
                return 1

        class Slotted:
            __slots__ = ("a",)

        class Color(enum.Enum):
            RED = 1
    """)
    (m,) = _baseline(reloader, "p_shape.m")
    old_child = m.Child
    put(root / "p_shape/m.py", """
        import enum

        class Base: pass
        class Other: pass

        class Child(Other):
            def f(self):
                return 2

        class Slotted:
            __slots__ = ("a", "b")

        class Color(enum.Enum):
            RED = 1
            BLUE = 2
    """)
    report = reloader.check(explicit=False)
    text = str(report)
    assert "restart needed: bases of Child changed (Base -> Other)" in text
    assert "restart needed: __slots__ of Slotted changed" in text
    assert "restart needed: members of Enum Color changed (added BLUE)" in text
    assert m.Child is not old_child and m.Child().f() == 2  # the new class is used from now on


def test_enum_method_change_keeps_members(tree) -> None:
    root, reloader, _ = tree
    put(root / "p_enum/__init__.py", "")
    put(root / "p_enum/m.py", "import enum\n\nclass Color(enum.Enum):\n    RED = 1\n\n    def label(self):\n        return 'red?'\n")
    (m,) = _baseline(reloader, "p_enum.m")
    red = m.Color.RED
    put(root / "p_enum/m.py", "import enum\n\nclass Color(enum.Enum):\n    RED = 1\n\n    def label(self):\n        return 'red!'\n")
    report = reloader.check(explicit=False)
    assert not report.restart_needed
    assert m.Color.RED is red and m.Color(1) is red and red.label() == "red!"


def test_shared_constant_rebound_only_where_imported(tree) -> None:
    root, reloader, ns = tree
    put(root / "p_atom/__init__.py", "")
    put(root / "p_atom/flags.py", "DEBUG = False\n")
    put(root / "p_atom/importer.py", "from .flags import DEBUG\n")
    put(root / "p_atom/own.py", "DEBUG = False\n")
    _, importer, own = _baseline(reloader, "p_atom.flags", "p_atom.importer", "p_atom.own")
    put(root / "p_atom/flags.py", "DEBUG = True\n")
    reloader.check(explicit=False)
    assert importer.DEBUG is True
    assert own.DEBUG is False  # same name, same object, but never imported from flags


def test_decorated_function_gets_new_body(tree) -> None:
    root, reloader, ns = tree
    put(root / "p_deco/__init__.py", "")
    put(root / "p_deco/m.py", """
        import functools

        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return ("logged", fn(*args))
            return wrapper

        @logged
        def f(x):
            return x + 1
    """)
    (m,) = _baseline(reloader, "p_deco.m")
    held = m.f
    put(root / "p_deco/m.py", (root / "p_deco/m.py").read_text().replace("x + 1", "x + 100"))
    reloader.check(explicit=False)
    assert held(1) == ("logged", 101) and m.f is held


def test_compiled_extension_change_needs_restart(tree) -> None:
    root, reloader, _ = tree
    put(root / "p_ext/__init__.py", "")
    so = root.resolve() / f"p_ext/fast{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    so.write_bytes(b"\x7fELF v1")
    importlib.import_module("p_ext")
    fake = types.ModuleType("p_ext.fast")
    fake.__file__ = str(so)
    sys.modules["p_ext.fast"] = fake
    assert not reloader.check(explicit=False)
    so.write_bytes(b"\x7fELF version 2")
    report = reloader.check(explicit=False)
    assert report.restart_needed == ["p_ext.fast"]
    assert "compiled extension p_ext.fast" in report.lines[0]


def test_change_made_before_the_first_check_is_reloaded(tree, monkeypatch) -> None:
    root, reloader, _ = tree
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    put(root / "p_late/__init__.py", "")
    put(root / "p_late/m.py", "def f():\n    return 'imported'\n")
    m = importlib.import_module("p_late.m")
    put(root / "p_late/m.py", "def f():\n    return 'pulled before the reloader looked'\n", git_pull=True)
    report = reloader.check(explicit=True)
    assert report.reloaded == ["p_late.m"] and m.f() == "pulled before the reloader looked"


def test_a_stale_pyc_left_on_disk_is_no_change_when_bytecode_is_not_written(tree, monkeypatch) -> None:
    """With PYTHONDONTWRITEBYTECODE the import compiles the edited source and leaves an older pyc in place: that pyc
    is not what was imported, so the module is current, not changed."""
    import py_compile

    root, reloader, _ = tree
    put(root / "p_stale/__init__.py", "")
    put(root / "p_stale/m.py", "def f():\n    return 'old'\n")
    py_compile.compile(str(root / "p_stale/m.py"), cfile=importlib.util.cache_from_source(str(root / "p_stale/m.py")))
    put(root / "p_stale/m.py", "def f():\n    return 'edited before the import'\n", git_pull=True)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    m = importlib.import_module("p_stale.m")
    assert m.f() == "edited before the import"
    report = reloader.check(explicit=False)
    assert "p_stale.m" not in report.reloaded


def test_enable_autoreload_outside_ipython_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload_mod, "_current_shell", lambda: None)  # another test may have left a shell behind
    with pytest.raises(ReloadError, match="needs a running IPython"):
        reload_mod.enable_autoreload(roots=[tmp_path])
    with pytest.raises(ReloadError, match="is not a folder"):
        reload_mod.reload(roots=[tmp_path / "missing"])


def test_body_only_change_keeps_module_state_and_true_line_numbers(tree) -> None:
    root, reloader, _ = tree
    put(root / "p_swap/__init__.py", "")
    put(root / "p_swap/m.py", """
        import functools
        LOADS = []
        LOADS.append("loaded")

        @functools.lru_cache(maxsize=None)
        def cached(x):
            return x * 2

        class Net:
            def forward(self):
                return 1
    """)
    (m,) = _baseline(reloader, "p_swap.m")
    loads, net = m.LOADS, m.Net()
    assert m.cached(3) == 6
    put(root / "p_swap/m.py", """
        import functools
        LOADS = []
        LOADS.append("loaded")

        @functools.lru_cache(maxsize=None)
        def cached(x):
            return x * 3

        class Net:
            def forward(self):
                # a line more above the raise
                raise RuntimeError("boom")
    """)
    report = reloader.check(explicit=False)
    assert report.lines == ["reloaded p_swap.m: changed cached, Net.forward"]
    assert m.LOADS is loads and loads == ["loaded"]  # module-level code did not run again
    assert m.cached(3) == 9  # the old body's cached answer is gone
    with pytest.raises(RuntimeError) as info:
        net.forward()
    assert info.traceback[-1].lineno + 1 == 12  # the raise is on line 12 of the new file


def test_function_called_at_import_runs_module_again(tree) -> None:
    root, reloader, _ = tree
    put(root / "p_call/__init__.py", "")
    put(root / "p_call/m.py", "def build():\n    return [1]\n\n\nTABLE = build()\n")
    (m,) = _baseline(reloader, "p_call.m")
    put(root / "p_call/m.py", "def build():\n    return [1, 2]\n\n\nTABLE = build()\n")
    reloader.check(explicit=False)
    assert m.TABLE == [1, 2]


def test_recreated_state_still_held_by_live_object_needs_restart(tree) -> None:
    root, reloader, ns = tree
    put(root / "p_held/__init__.py", "")
    put(root / "p_held/m.py", "REGISTRY = {'a': 1}\nOTHER = {'b': 1}\n\n\nclass Holder:\n    def __init__(self):\n        self.registry = REGISTRY\n")
    (m,) = _baseline(reloader, "p_held.m")
    ns["holder"] = m.Holder()
    put(root / "p_held/m.py", "REGISTRY = {'a': 2}\nOTHER = {'b': 2}\n\n\nclass Holder:\n    def __init__(self):\n        self.registry = REGISTRY\n")
    report = reloader.check(explicit=False)
    held = [line for line in report.lines if line.startswith("restart needed")]
    assert held == ["restart needed: p_held.m.REGISTRY was re-created by the reload, but the old object is still held "
                    "by a Holder object; those keep using the old one (re-create them, or restart the kernel)"]


def test_installed_copy_already_older_than_checkout_is_reported(tree, tmp_path: Path) -> None:
    root, reloader, _ = tree
    site = tmp_path / "site-packages"
    put(site / "p_copy/__init__.py", "")
    put(site / "p_copy/m.py", "def f():\n    return 'installed'\n")
    put(site / "p_utils/__init__.py", "X = 'an unrelated installed package'\n")
    put(root / "p_copy/__init__.py", "")
    put(root / "p_copy/m.py", "def f():\n    return 'checkout, newer'\n")
    put(root / "p_utils/__init__.py", "X = 'the project folder of the same name'\n")
    for path in (root / "p_copy/m.py", root / "p_utils/__init__.py"):
        os.utime(path, (path.stat().st_mtime + 60, path.stat().st_mtime + 60))
    sys.path.insert(0, str(site))
    try:
        importlib.import_module("p_copy.m")
        importlib.import_module("p_utils")
        report = reloader.check(explicit=False)
    finally:
        sys.path.remove(str(site))
    assert report.stale == ["p_copy"], report.lines
    assert f"pip install -e {root.resolve()}" in report.lines[0] and "p_copy/m.py" in report.lines[0]


def test_package_attribute_stays_callable_after_submodule_import(tree) -> None:
    import kaggle_kit

    root, _, _ = tree
    assert isinstance(kaggle_kit.reload(roots=[root], verbose=False), reload_mod.ReloadReport)


def test_patched_class_keeps_identity_in_module_level_registries(tree) -> None:
    root, reloader, ns = tree
    put(root / "p_reg/__init__.py", "")
    put(root / "p_reg/m.py", "class Net:\n    width = 1\n\n    def size(self):\n        return self.width\n\n\nMODELS = {'net': Net}\n")
    (m,) = _baseline(reloader, "p_reg.m")
    net, cls = m.MODELS["net"](), m.Net
    put(root / "p_reg/m.py", "class Net:\n    width = 2\n\n    def size(self):\n        return self.width * 10\n\n\nMODELS = {'net': Net}\n")
    report = reloader.check(explicit=False)
    assert report.lines == ["reloaded p_reg.m: changed Net.width, Net.size"]
    assert m.Net is cls and m.MODELS["net"] is cls and isinstance(net, m.MODELS["net"]) and net.size() == 20


def test_default_root_is_the_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".kaggle-kit-root").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("KAGGLE_KIT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path / "notebooks")
    assert reload_mod._resolve_roots(None)[0] == tmp_path.resolve()


def test_the_reloader_leaves_its_own_package_out(tree) -> None:
    _, reloader, _ = tree
    kit = Path(reload_mod.__file__).resolve().parents[2]  # the checkout holding kaggle_kit/
    reloader.set_roots([kit])
    assert not reloader.check(explicit=False)
    tracked = reloader.tracked_modules
    assert "kaggle_kit.errors" in tracked and "kaggle_kit.hotreload.scan" in sys.modules
    assert [name for name in tracked if name.startswith("kaggle_kit.hotreload")] == []


def test_hot_reload_watches_the_users_project_beside_the_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "digits-repo"
    put(user / "pyproject.toml", '[tool.kaggle-kit]\nname = "digits"\nowner = "alice"\n')
    put(user / "digits_hr/__init__.py", "")
    put(user / "digits_hr/model.py", "def layers():\n    return 2\n")
    (user / "notebooks").mkdir()
    monkeypatch.delenv("KAGGLE_KIT_ROOT", raising=False)
    monkeypatch.setenv("KAGGLE_KIT_PROJECT", "digits")
    monkeypatch.chdir(user / "notebooks")
    roots = reload_mod._resolve_roots(None)
    kit = Path(reload_mod.__file__).resolve().parents[2]
    assert roots[0] == user.resolve(), "the user's project, not the kit's tree, is the project root"
    assert kit in roots, "the kit's writable clone is watched too"
    sys.path.insert(0, str(user))
    try:
        reloader = reload_mod.Reloader(roots[:1])  # the kit's own modules are another test's subject
        reloader.namespace = {}
        model = importlib.import_module("digits_hr.model")
        assert not reloader.check(explicit=False)
        put(user / "digits_hr/model.py", "def layers():\n    return 3\n")
        report = reloader.check(explicit=False)
        assert report.lines == ["reloaded digits_hr.model: changed layers"] and model.layers() == 3
    finally:
        sys.path.remove(str(user))
        for name in [n for n in sys.modules if n.startswith("digits_hr")]:
            del sys.modules[name]

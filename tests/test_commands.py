"""The command line: every command is listed, commands live in kaggle_kit/commands/, and a workload plugin that fails
to load breaks only itself (simulated with real, temporary dist-info folders on sys.path)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import kaggle_kit
from kaggle_kit.commands import COMMANDS, main
from kaggle_kit.commands.plugins import install_hint, plugin_entry_points

BUILT_IN = ("init", "doctor", "lint", "render", "publish-code", "publish-kit", "push", "status", "output", "rehearse",
            "sim")
KIT = Path(kaggle_kit.__file__).parent


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _listed(help_text: str, name: str) -> str | None:
    """The help line of command ``name`` in ``--help``, or None."""
    found = re.search(rf"^ {{4}}{re.escape(name)}(?: +(.*))?$", help_text, re.M)
    return None if found is None else (found.group(1) or "")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for fake installed plugins; wide help so lines are not wrapped."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.setenv("COLUMNS", "500")
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("kk_"):
            del sys.modules[name]


def install(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str], *,
            requires: tuple[str, ...] = (), extras: tuple[str, ...] = ()) -> None:
    """A distribution as pip would leave it: a dist-info with metadata and entry points, and its modules."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    metadata = ["Metadata-Version: 2.1", f"Name: {dist}", "Version: 1.0",
                *(f"Provides-Extra: {e}" for e in extras), *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")
    (info / "entry_points.txt").write_text(
        "[kaggle_kit.commands]\n" + "".join(f"{name} = {value}\n" for name, value in entry_points.items()))
    for name, source in modules.items():
        path = site / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())


def _lint_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "empty-kernel"
    folder.mkdir()
    assert main(["lint", "-p", str(folder)]) == 2
    assert f"{folder / 'kernel-metadata.json'} does not exist" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    for name in (*BUILT_IN, "cmfd"):
        assert _listed(text, name) is not None, f"{name} missing from --help:\n{text}"
    assert _listed(text, "cmfd") == "copy-move forgery detection workload"


def test_console_script_module_and_commands_share_one_main() -> None:
    from kaggle_kit import cli

    assert cli.main is main


def test_each_command_module_is_wired_and_library_modules_hold_no_argparse() -> None:
    modules = {p.stem for p in (KIT / "commands").glob("*.py")} - {"__init__", "arguments", "plugins"}
    assert {m.__name__.rpartition(".")[2] for m in COMMANDS} == modules
    for command in COMMANDS:
        assert callable(command.register) and callable(command.run)
    plugin_modules = {KIT / "cmfd" / "commands.py"}
    library = [p for p in KIT.rglob("*.py")
               if "commands" not in p.relative_to(KIT).parts[:1] and p not in plugin_modules]
    with_argparse = []
    for path in library:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if "argparse" in names:
                with_argparse.append(str(path.relative_to(KIT)))
    assert with_argparse == []


def test_missing_optional_dependency_lists_the_plugin_with_the_install_hint(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "kk-heavy-kit", {"heavy": "kk_heavy_cmds"}, {"kk_heavy_cmds": """
        import kk_absent_dependency

        def register(subparsers):
            subparsers.add_parser("heavy").set_defaults(func=lambda args: 0)
    """}, requires=("numpy>=1.24", 'kk-absent-dependency>=2.0; extra == "heavy"'), extras=("heavy",))
    hint = "pip install 'kk-heavy-kit[heavy]'"
    text = _help(capsys)
    assert _listed(text, "heavy") == f"unavailable: needs kk_absent_dependency, which is not installed; {hint}"
    assert _listed(text, "cmfd") is not None and _listed(text, "lint") is not None

    assert main(["heavy", "score", "--solution", "s.csv"]) == 2
    err = capsys.readouterr().err
    assert err == f"kaggle-kit: error: the heavy commands need kk_absent_dependency, which is not installed: {hint}\n"
    _lint_still_works(tmp_path, capsys)


def test_plugin_that_raises_on_import_is_an_error_naming_it(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "kk-broken-kit", {"broken": "kk_broken_cmds"}, {"kk_broken_cmds": """
        SETTING = 1
        raise RuntimeError("plugin bug, 100% reproducible")
    """})
    text = _help(capsys)
    assert _listed(text, "broken") == "plugin failed to load (kk_broken_cmds): RuntimeError: plugin bug, 100% reproducible"

    assert main(["broken", "--anything"]) == 2
    err = capsys.readouterr().err
    assert ("the plugin 'broken' (entry point broken = kk_broken_cmds in group kaggle_kit.commands of kk-broken-kit) "
            "failed to load: RuntimeError: plugin bug, 100% reproducible at ") in err
    assert f"{site / 'kk_broken_cmds.py'}:2" in err
    _lint_still_works(tmp_path, capsys)


def test_missing_module_of_the_plugin_itself_is_broken_not_a_missing_dependency(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "kk-stale-kit", {"stale": "kk_stale_pkg.cli:add_commands"}, {"kk_stale_pkg.__init__": ""},
            extras=("stale",))
    line = _listed(_help(capsys), "stale")
    assert line == "plugin failed to load (kk_stale_pkg.cli:add_commands): ModuleNotFoundError: No module named " \
                   "'kk_stale_pkg.cli'"
    assert main(["stale"]) == 2
    assert "pip install" not in capsys.readouterr().err


def test_plugin_taking_a_built_in_name_or_crashing_in_register_leaves_the_rest_intact(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "kk-rude-kit", {"rude": "kk_rude_cmds", "crash": "kk_crash_cmds:register"}, {
        "kk_rude_cmds": """
            def register(subparsers):
                subparsers.add_parser("lint").set_defaults(func=lambda args: 99)
        """,
        "kk_crash_cmds": """
            def register(subparsers):
                subparsers.add_parser("crash").set_defaults(func=lambda args: 99)
                raise ValueError("half way")
        """,
    })
    text = _help(capsys)
    assert _listed(text, "rude") == "plugin failed to load (kk_rude_cmds): it registers lint, which another command " \
                                    "already is"
    assert _listed(text, "crash") == "plugin failed to load (kk_crash_cmds:register): ValueError: half way"
    assert main(["crash"]) == 2  # the half-registered parser, whose command would return 99, is not there
    assert "the plugin 'crash'" in capsys.readouterr().err
    _lint_still_works(tmp_path, capsys)


def test_working_plugins_register_a_module_or_a_function(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "kk-good-kit", {"hello": "kk_hello_cmds", "legacy": "kk_legacy_cmds:add_commands"}, {
        "kk_hello_cmds": """
            def register(subparsers):
                parser = subparsers.add_parser("hello", help="say hello")
                parser.add_argument("--name", default="world")
                parser.set_defaults(func=run)

            def run(args):
                print(f"hello {args.name}")
                return 3
        """,
        "kk_legacy_cmds": """
            def add_commands(subparsers):
                subparsers.add_parser("legacy", help="old style").set_defaults(func=lambda args: 0)
        """,
    })
    assert [ep.name for ep in plugin_entry_points() if ep.name in ("hello", "legacy")] == ["hello", "legacy"]
    text = _help(capsys)
    assert _listed(text, "hello") == "say hello" and _listed(text, "legacy") == "old style"
    assert main(["hello", "--name", "kit"]) == 3
    assert capsys.readouterr().out == "hello kit\n"
    with pytest.raises(SystemExit):
        main(["hello", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_cmfd_without_its_extra_is_listed_with_the_hint_and_refuses_to_run() -> None:
    # The real plugin and the kit's own metadata, in a process where scipy cannot be imported.
    script = textwrap.dedent("""
        import sys

        class NoScipy:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "scipy":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoScipy())
        from kaggle_kit.commands import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "COLUMNS": "500"}
    shown = subprocess.run([sys.executable, "-c", script, "--help"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    hint = "pip install 'kaggle-kit[cmfd]'"
    assert _listed(shown.stdout, "cmfd") == f"unavailable: needs scipy, which is not installed; {hint}"
    assert _listed(shown.stdout, "lint") is not None
    ran = subprocess.run([sys.executable, "-c", script, "cmfd", "score", "--solution", "s.csv", "--submission",
                          "p.csv"], capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 2
    assert ran.stderr == f"kaggle-kit: error: the cmfd commands need scipy, which is not installed: {hint}\n"


def test_install_hint_without_a_matching_extra(site: Path) -> None:
    install(site, "kk-hint-kit", {"hinted": "kk_hinted_cmds", "plain": "kk_plain_cmds"}, {},
            requires=("kk-base-dep>=1.0",), extras=("hinted",))
    eps = {ep.name: ep for ep in plugin_entry_points()}
    assert install_hint(eps["hinted"], "kk_base_dep.sub") == "pip install 'kk-base-dep>=1.0'"
    assert install_hint(eps["hinted"], "kk_unknown") == "pip install 'kk-hint-kit[hinted]'"
    assert install_hint(eps["plain"], "kk_unknown.deep") == "pip install kk_unknown"

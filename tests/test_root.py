"""find_root in every layout git or Kaggle produces, built in temporary folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kaggle_kit.errors import RootNotFoundError
from kaggle_kit.root import find_root


@pytest.fixture
def kaggle(kaggle_root, monkeypatch):
    monkeypatch.delenv("KAGGLE_KIT_ROOT", raising=False)
    monkeypatch.chdir(kaggle_root / "working")
    return kaggle_root


def _repo(path: Path, *markers: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for marker in markers or (".git",):
        target = path / marker
        if marker == ".git":
            target.mkdir()
        else:
            target.write_text("")
    return path


def test_upward_from_explicit_start(kaggle):
    repo = _repo(kaggle / "working" / "proj", "setup.cfg")
    (repo / "pkg" / "sub").mkdir(parents=True)
    found = find_root(repo / "pkg" / "sub")
    assert found.path == repo and found.marker == "setup.cfg"
    assert "upward" in found.reason


def test_upward_from_working_directory(kaggle, monkeypatch):
    repo = _repo(kaggle / "working" / "proj")
    (repo / "notebooks").mkdir()
    monkeypatch.chdir(repo / "notebooks")
    assert find_root(Path.cwd()).path == repo


def test_explicit_marker_outranks_nearer_markers(kaggle):
    outer = _repo(kaggle / "working" / "outer", ".kaggle-kit-root")
    inner = _repo(outer / "vendored", "setup.cfg", ".git")
    found = find_root(inner)
    assert found.path == outer and found.marker == ".kaggle-kit-root"


def test_nearest_marker_wins_without_explicit_marker(kaggle):
    outer = _repo(kaggle / "working" / "outer", "kernel-metadata.json")
    inner = _repo(outer / "inner", "pyproject.toml")
    assert find_root(inner).path == inner


def test_downward_finds_a_clone_under_working(kaggle):
    repo = _repo(kaggle / "working" / "luc-cmfd", ".git", "setup.cfg")
    found = find_root(Path.cwd())
    assert found.path == repo
    assert "below" in found.reason


def test_nested_clone_takes_the_outer_one(kaggle):
    outer = _repo(kaggle / "working" / "luc-cmfd", ".git")
    _repo(outer / "luc-cmfd", ".git")
    found = find_root(Path.cwd())
    assert found.path == outer


def test_nested_clone_inside_a_plain_folder(kaggle):
    inner = _repo(kaggle / "working" / "luc-cmfd" / "luc-cmfd", ".git")
    assert find_root(Path.cwd()).path == inner


def test_dataset_under_current_layout_with_extraction_subfolder(kaggle):
    copy = _repo(kaggle / "input" / "datasets" / "alice" / "luc-code" / "luc-cmfd-main", "setup.cfg")
    found = find_root(Path.cwd())
    assert found.path == copy and "read-only" in found.reason


def test_dataset_under_legacy_layout(kaggle):
    copy = _repo(kaggle / "input" / "luc-code", "setup.cfg")
    assert find_root(Path.cwd()).path == copy


def test_writable_clone_beats_read_only_copy_and_says_so(kaggle):
    clone = _repo(kaggle / "working" / "luc-cmfd", ".git")
    copy = _repo(kaggle / "input" / "datasets" / "alice" / "luc-code", "setup.cfg")
    found = find_root(Path.cwd())
    assert found.path == clone
    assert str(copy) in found.reason
    assert any("read-only copy" in note for note in found.notes)


def test_cwd_elsewhere_still_searches_kaggle_working(kaggle, tmp_path, monkeypatch):
    clone = _repo(kaggle / "working" / "proj", ".git")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_root(elsewhere).path == clone


def test_nothing_found_lists_every_place(kaggle):
    with pytest.raises(RootNotFoundError) as err:
        find_root(kaggle / "working")
    message = str(err.value)
    assert str(kaggle / "working") in message
    assert str(kaggle / "input") in message
    assert "KAGGLE_KIT_ROOT" in message


def test_override_variable_wins(kaggle, tmp_path, monkeypatch):
    _repo(kaggle / "working" / "proj", ".git")
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    monkeypatch.setenv("KAGGLE_KIT_ROOT", str(chosen))
    found = find_root()
    assert found.path == chosen.resolve() and "KAGGLE_KIT_ROOT" in found.reason


def test_override_variable_must_exist(kaggle, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_ROOT", str(tmp_path / "missing"))
    with pytest.raises(RootNotFoundError, match="not a folder"):
        find_root()


def test_add_to_path_and_cwd_unchanged(kaggle, monkeypatch):
    repo = _repo(kaggle / "working" / "proj", ".git")
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = Path.cwd()
    find_root(Path.cwd(), add_to_path=True)
    assert sys.path[0] == str(repo)
    assert Path.cwd() == before


def test_skips_virtualenvs_when_searching_down(kaggle):
    _repo(kaggle / "working" / ".venv" / "lib", "setup.cfg")
    repo = _repo(kaggle / "working" / "b-proj" / "src", "pyproject.toml")
    assert find_root(Path.cwd()).path == repo


def test_caller_file_is_a_start_when_cwd_has_nothing(kaggle, tmp_path, monkeypatch):
    repo = _repo(tmp_path / "scripts-repo", "setup.cfg")
    script = repo / "run.py"
    script.write_text("from kaggle_kit.root import find_root\nROOT = find_root()\n")
    namespace: dict = {"__name__": "user_script"}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    assert namespace["ROOT"].path == repo


def _kit_tree(path: Path) -> Path:
    """The kit as a clone or an attached dataset: its package, its own declaration and its explicit marker."""
    (path / "kaggle_kit").mkdir(parents=True)
    (path / "kaggle_kit" / "__init__.py").write_text("")
    (path / ".kaggle-kit-root").write_text("")
    (path / "pyproject.toml").write_text('[tool.kaggle-kit]\nname = "cmfd"\nowner = "kit"\n')
    return path


def _user_project(path: Path, *, explicit_marker: bool = True) -> Path:
    (path / "digits").mkdir(parents=True)
    (path / "digits" / "model.py").write_text("")
    (path / "pyproject.toml").write_text('[tool.kaggle-kit]\nname = "digits"\nowner = "alice"\n')
    if explicit_marker:
        (path / ".kaggle-kit-root").write_text("")
    return path


@pytest.mark.parametrize("project", [None, "digits"])
def test_kit_and_user_code_datasets_attached_picks_the_users_project(kaggle, monkeypatch, project):
    monkeypatch.delenv("KAGGLE_KIT_PROJECT", raising=False)
    _kit_tree(kaggle / "input" / "datasets" / "kit" / "kaggle-kit")
    user = _user_project(kaggle / "input" / "datasets" / "alice" / "digits-code")
    found = find_root(Path.cwd(), project=project)  # from a notebook cell: the working folder, no caller file
    assert found.path == user
    assert "the declaration of project 'digits'" in found.reason and "attached input" in found.reason
    if project is None:
        assert "kit's own tree" in found.reason and "ranks below the project" in found.reason


def test_kit_and_user_clones_side_by_side_pick_the_users_project(kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_KIT_PROJECT", raising=False)
    _kit_tree(kaggle / "working" / "kaggle-kit")
    user = _user_project(kaggle / "working" / "digits")
    found = find_root(Path.cwd())
    assert found.path == user and "kit's own tree at" in found.reason
    monkeypatch.setenv("KAGGLE_KIT_PROJECT", "digits")  # what a rendered notebook's bootstrap sets
    found = find_root(Path.cwd())
    assert found.path == user and "the declaration of project 'digits'" in found.reason


def test_user_clone_with_the_kit_installed_is_found_upward(kaggle, monkeypatch):
    import kaggle_kit

    user = _user_project(kaggle / "working" / "digits", explicit_marker=False)
    monkeypatch.chdir(user / "digits")
    found = find_root(project="digits")
    assert found.path == user and "found upward" in found.reason
    assert not str(Path(kaggle_kit.__file__).resolve()).startswith(str(user)), "the kit is not in the project"
    assert find_root().path == user


def test_a_named_project_that_is_not_there_is_an_error_never_another_project(kaggle, monkeypatch):
    _kit_tree(kaggle / "input" / "datasets" / "kit" / "kaggle-kit")
    with pytest.raises(RootNotFoundError, match="project 'digits'"):
        find_root(project="digits")


def test_the_users_code_dataset_in_an_extraction_folder_still_beats_the_kit(kaggle):
    _kit_tree(kaggle / "input" / "datasets" / "kit" / "kaggle-kit")
    user = _user_project(kaggle / "input" / "datasets" / "alice" / "digits-code" / "digits-main")
    assert find_root(Path.cwd()).path == user

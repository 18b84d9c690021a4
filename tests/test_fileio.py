"""Atomic writes and JSON read with limits (kaggle_kit.fileio)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kaggle_kit.errors import MalformedFileError
from kaggle_kit.fileio import atomic_write_json, atomic_writer, loads_json, move_into_place, read_json


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic_writer(target, "w", encoding="utf-8") as fh:
            fh.write('{"step": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_nan_is_refused_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON"):
        atomic_write_json(tmp_path / "a.json", {"loss": float("nan")})
    assert not (tmp_path / "a.json").exists()
    atomic_write_json(tmp_path / "b.json", {"loss": float("nan")}, allow_nan=True)
    with pytest.raises(MalformedFileError, match="NaN"):
        read_json(tmp_path / "b.json")
    assert read_json(tmp_path / "b.json", allow_nan=True)["loss"] != 0


def test_move_into_place_replaces_a_folder(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("x")
    move_into_place(tmp_path / "new", tmp_path / "final")
    assert (tmp_path / "final" / "f").read_text() == "x"


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, '{"a": [' + "[" * 70 + "]" * 70 + "]}"])
def test_deep_nesting_is_refused_before_the_parser_recurses(text: str) -> None:
    with pytest.raises(MalformedFileError, match="nests deeper than 64"):
        loads_json(text, where="ledger.json")


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"note": "[" * 500 + '\\"{' * 100, "list": [[1]]})
    assert loads_json(text, where="x")["list"] == [[1]]


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe{\x00}\x00", "not UTF-8"),
    (b'{"a": 1', "not valid JSON"),
    (b"x" * 100, "more than the 10"),
])
def test_bad_bytes_name_the_input(data: bytes, message: str) -> None:
    with pytest.raises(MalformedFileError, match=message) as info:
        loads_json(data, where="/in/latest.json", max_bytes=10 if len(data) == 100 else 1 << 20)
    assert "/in/latest.json" in str(info.value)


def test_a_utf8_bom_is_accepted() -> None:
    assert loads_json(b"\xef\xbb\xbf{\"a\": 1}", where="x") == {"a": 1}


def test_read_json_refuses_an_oversize_file_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(2048)
    with pytest.raises(MalformedFileError, match="2048 bytes"):
        read_json(big, max_bytes=1024)
    with pytest.raises(MalformedFileError, match="cannot read"):
        read_json(tmp_path / "missing.json")


def test_the_temporary_file_is_in_the_target_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(os.path.dirname(a)), real(a, b))[1])
    atomic_write_json(tmp_path / "x.json", [1])
    assert seen == [str(tmp_path)]

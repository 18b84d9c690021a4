"""The root's metadata files reach every command through one reader: bad bytes are a kit error naming the file."""

from __future__ import annotations

import pytest

from kaggle_kit.cli import main


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"id": "alice/caf\xe9-code", "title": "code"}', "dataset-metadata.json is not UTF-8 text"),
    ('{"id": "alice/kit-code"}'.encode("utf-16"), "dataset-metadata.json is not UTF-8 text"),
    (b'{"id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "dataset-metadata.json nests deeper than 64 levels"),
])
def test_publish_code_refuses_a_bad_dataset_metadata_file_before_any_upload(tmp_path, capsys, kaggle_isolation,
                                                                             content, needle):
    (tmp_path / "kaggle-kit.toml").write_text('name = "demo"\nowner = "alice"\n\n[notebooks.train]\n'
                                              'source = "notebooks/train.py"\n')
    (tmp_path / "dataset-metadata.json").write_bytes(content)
    assert main(["publish-code", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "fix the file" in err and "Traceback" not in err

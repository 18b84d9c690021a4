"""kernel-metadata.json lint: each refusal names the field and the fix; `kaggle-kit lint -p DIR`."""

from __future__ import annotations

import json

import pytest

from kaggle_kit.cli import main
from kaggle_kit.errors import MetadataError
from kaggle_kit.lint import lint_kernel_metadata, require_valid_kernel_metadata

GOOD = {
    "id": "alice/cmfd-train",
    "title": "CMFD train",
    "code_file": "train.ipynb",
    "language": "python",
    "kernel_type": "notebook",
    "is_private": True,
    "enable_gpu": True,
    "enable_internet": True,
    "machine_shape": "NvidiaTeslaT4",
    "dataset_sources": ["alice/cmfd-ckpt/3", "alice/cmfd-code"],
    "competition_sources": ["recodai-luc-scientific-image-forgery-detection"],
    "model_sources": ["metaresearch/dinov2/pyTorch/small/1"],
}


def _folder(tmp_path, **changes):
    meta = {**GOOD, **changes}
    for key, value in changes.items():
        if value is None:
            del meta[key]
    (tmp_path / "kernel-metadata.json").write_text(json.dumps(meta))
    (tmp_path / "train.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                      "nbformat_minor": 5}))
    return tmp_path


def _errors(findings):
    return {f.field: f for f in findings if f.severity == "error"}


def test_good_metadata_has_only_the_secrets_reminder(tmp_path):
    findings = lint_kernel_metadata(_folder(tmp_path), checkpoint_dataset="alice/cmfd-ckpt")
    assert [(f.severity, f.field) for f in findings] == [("info", "secrets")]
    assert "Add-ons > Secrets" in findings[-1].fix
    require_valid_kernel_metadata(tmp_path, checkpoint_dataset="alice/cmfd-ckpt")


@pytest.mark.parametrize("changes, field, fix", [
    ({"id": None}, "id", "<your-username>/<kernel-slug>"),
    ({"id": "alice/cmfd-train/3"}, "id", "<your-username>/<kernel-slug>"),
    ({"title": "CMFD"}, "title", "at least 5"),
    ({"code_file": "missing.ipynb"}, "code_file", "render or copy"),
    ({"code_file": None}, "code_file", "code_file"),
    ({"language": "julia"}, "language", "python, r, rmarkdown"),
    ({"kernel_type": "app"}, "kernel_type", "script, notebook"),
    ({"machine_shape": "NvidiaTeslaP100"}, "machine_shape", '"NvidiaTeslaT4"'),
    ({"machine_shape": "nvidiateslat4"}, "machine_shape", 'did you mean "NvidiaTeslaT4"'),
    ({"machine_shape": "GPU"}, "machine_shape", "NvidiaL4"),
    ({"enable_internet": None}, "enable_internet", '"enable_internet": true'),
    ({"enable_internet": False}, "enable_internet", '"enable_internet": true'),
    ({"dataset_sources": ["alice/other"]}, "dataset_sources", '"alice/cmfd-ckpt"'),
    ({"dataset_sources": "alice/cmfd-ckpt"}, "dataset_sources", "dataset_sources"),
    ({"model_sources": ["metaresearch/dinov2"]}, "model_sources", "owner/model/framework/variation/N"),
    ({"docker_image_pinning_type": "newest"}, "docker_image_pinning_type", "original, latest"),
])
def test_each_refusal_names_field_and_fix(tmp_path, changes, field, fix):
    findings = lint_kernel_metadata(_folder(tmp_path, **changes), checkpoint_dataset="alice/cmfd-ckpt")
    errors = _errors(findings)
    assert field in errors, findings
    assert fix in errors[field].fix
    with pytest.raises(MetadataError, match=field):
        require_valid_kernel_metadata(tmp_path, checkpoint_dataset="alice/cmfd-ckpt")


def test_without_mirroring_internet_may_be_off(tmp_path):
    findings = lint_kernel_metadata(_folder(tmp_path, enable_internet=False), mirroring=False)
    assert not _errors(findings)
    missing = lint_kernel_metadata(_folder(tmp_path, enable_internet=None), mirroring=False)
    assert [f.severity for f in missing if f.field == "enable_internet"] == ["warning"]


def test_title_not_matching_slug_warns(tmp_path):
    findings = lint_kernel_metadata(_folder(tmp_path, title="Something else"), checkpoint_dataset="alice/cmfd-ckpt")
    assert not _errors(findings)
    assert any(f.field == "title" and f.severity == "warning" for f in findings)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(MetadataError, match="does not exist"):
        lint_kernel_metadata(tmp_path)
    (tmp_path / "kernel-metadata.json").write_text("{oops")
    with pytest.raises(MetadataError, match="not valid JSON"):
        lint_kernel_metadata(tmp_path)
    with pytest.raises(MetadataError, match="not a folder"):
        lint_kernel_metadata(tmp_path / "nowhere")


def test_cli(tmp_path, capsys, monkeypatch):
    _folder(tmp_path)
    assert main(["lint", "-p", str(tmp_path), "--checkpoint-dataset", "alice/cmfd-ckpt"]) == 0
    assert "ready to push" in capsys.readouterr().out
    _folder(tmp_path, machine_shape="NvidiaTeslaP100")
    monkeypatch.chdir(tmp_path)
    assert main(["lint"]) == 1
    out = capsys.readouterr().out
    assert "error: machine_shape: NvidiaTeslaP100 is retired" in out and "1 error(s)" in out
    assert main(["lint", "-p", str(tmp_path / "nowhere")]) == 2  # MetadataError -> the CLI's error exit


def test_deep_metadata_or_notebook_is_a_kit_error_not_a_recursion_error(tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    _folder(tmp_path)
    (tmp_path / "train.ipynb").write_text(deep)
    errors = _errors(lint_kernel_metadata(tmp_path, checkpoint_dataset="alice/cmfd-ckpt"))
    assert "nests deeper than 64 levels" in errors["code_file"].message
    (tmp_path / "kernel-metadata.json").write_text('{"id": ' + deep + "}")
    assert main(["lint", "-p", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "kernel-metadata.json nests deeper than 64 levels" in err and "Traceback" not in err
    (tmp_path / "kernel-metadata.json").write_bytes(b'{"id": "alice/caf\xe9"}')
    assert main(["lint", "-p", str(tmp_path)]) == 2
    assert "kernel-metadata.json is not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("outside", ["../elsewhere.ipynb", "/tmp/elsewhere.ipynb", "link.ipynb"])
def test_code_file_outside_the_kernel_folder_is_refused(tmp_path, outside):
    kernel = tmp_path / "kernel"
    kernel.mkdir()
    (tmp_path / "elsewhere.ipynb").write_text(json.dumps({"cells": []}))
    (kernel / "link.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    code_file = outside.replace("/tmp/", f"{tmp_path}/")
    errors = _errors(lint_kernel_metadata(_folder(kernel, code_file=code_file), checkpoint_dataset="alice/cmfd-ckpt"))
    assert "outside the kernel folder" in errors["code_file"].message

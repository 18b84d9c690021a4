"""The stand-in's competition RPCs, driven by the real ``kaggle`` CLI (and its Python client for the notebook form):
a competition's files, their download, a submission as a file or as a notebook version's output, the submissions
list, and scoring with a declared metric against labels the competition folder holds but does not mount."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

SLUG = "tiny-comp"
METRIC = '''
import csv


def score(labels, submission):
    def rows(path):
        with open(path, newline="") as fh:
            return {r["id"]: r["label"] for r in csv.DictReader(fh)}

    truth, guess = rows(labels), rows(submission)
    if set(truth) != set(guess):
        raise ValueError(f"expected ids {sorted(truth)}, got {sorted(guess)}")
    return sum(truth[k] == guess[k] for k in truth) / len(truth)
'''


@pytest.fixture(scope="module")
def competition(_sim_server_module, tmp_path_factory) -> Path:
    from kaggle_kit.sim.competitions import write_scoring

    base = tmp_path_factory.mktemp("competition")
    project = base / "project"
    (project / "tinymetric").mkdir(parents=True)
    (project / "tinymetric" / "__init__.py").write_text(METRIC)
    labels = base / "labels.csv"
    labels.write_text("id,label\n0,1\n1,0\n2,1\n3,1\n")
    folder = _sim_server_module.competitions_dir / SLUG
    (folder / "images").mkdir(parents=True)
    (folder / "sample_submission.csv").write_text("id,label\n0,0\n1,0\n2,0\n3,0\n")
    (folder / "images" / "a.txt").write_text("pixels")
    write_scoring(_sim_server_module.competitions_dir, SLUG, labels=labels, score="tinymetric:score", root=project)
    return folder


def _ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _scored(kaggle_cli, wanted: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        listing = _ok(kaggle_cli("competitions", "submissions", SLUG, "--csv"))
        row = next((line for line in listing.splitlines() if wanted in line), "")
        if "PENDING" not in row.upper() and row:
            return row
        assert time.monotonic() < deadline, f"still pending after {timeout:.0f} s:\n{listing}"
        time.sleep(0.2)


def test_files_list_and_download_one_or_all(kaggle_cli, competition, tmp_path):
    listing = _ok(kaggle_cli("competitions", "files", SLUG))
    assert "sample_submission.csv" in listing and "images/a.txt" in listing
    assert "scoring" not in listing and "labels" not in listing, "the labels are never listed"
    _ok(kaggle_cli("competitions", "download", SLUG, "-f", "sample_submission.csv", "-p", str(tmp_path / "one")))
    assert (tmp_path / "one" / "sample_submission.csv").read_text().startswith("id,label\n0,0")
    _ok(kaggle_cli("competitions", "download", SLUG, "-p", str(tmp_path / "all")))
    with zipfile.ZipFile(tmp_path / "all" / f"{SLUG}.zip") as zf:
        assert sorted(zf.namelist()) == ["images/a.txt", "sample_submission.csv"]


def test_a_file_submission_is_scored_with_the_declared_metric(kaggle_cli, competition, tmp_path):
    submission = tmp_path / "submission.csv"
    submission.write_text("id,label\n0,1\n1,0\n2,0\n3,1\n")
    out = _ok(kaggle_cli("competitions", "submit", SLUG, "-f", str(submission), "-m", "three of four"))
    assert "successfully submitted" in out.lower(), out
    row = _scored(kaggle_cli, "three of four")
    assert "COMPLETE" in row.upper() and "0.75000" in row, row
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\n0,1\n")
    _ok(kaggle_cli("competitions", "submit", SLUG, "-f", str(bad), "-m", "one row short"))
    row = _scored(kaggle_cli, "one row short")
    assert "ERROR" in row.upper(), row
    from kaggle_kit.kaggle_api import make_api

    failed = [r for r in make_api().competition_submissions(SLUG) if r.description == "one row short"]
    assert "expected ids" in failed[0].error_description, "the metric's complaint reaches the submitter"


def test_a_notebook_version_is_submitted_by_its_output(sim_server, competition):
    from kaggle_kit.kaggle_api import make_api
    from kaggle_kit.kernels import push_folder

    import nbformat

    folder = Path(sim_server.store.root).parent / "submitter"
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("open('/kaggle/working/submission.csv', 'w').write("
                                          "'id,label\\n0,1\\n1,0\\n2,1\\n3,1\\n')")]
    nbformat.write(nb, str(folder / "nb.ipynb"))
    (folder / "kernel-metadata.json").write_text(
        '{"id": "alice/submitter", "title": "the submitter", "code_file": "nb.ipynb", "language": "python", '
        '"kernel_type": "notebook", "is_private": true, "enable_gpu": false, "enable_internet": false, '
        f'"dataset_sources": [], "kernel_sources": [], "competition_sources": ["{SLUG}"]}}')
    api = make_api()
    pushed = push_folder(folder, "alice/submitter", api=api)
    assert sim_server.wait_for_sessions(300), "the submitting notebook never ended"
    reply = api.competition_submit_code("submission.csv", "by notebook", SLUG, kernel="alice/submitter",
                                        kernel_version=pushed.version, quiet=True)
    assert reply.ref > 0
    deadline = time.monotonic() + 60
    while True:
        rows = [r for r in api.competition_submissions(SLUG) if r.ref == reply.ref]
        if rows and rows[0].status.name != "PENDING":
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert rows[0].status.name == "COMPLETE" and rows[0].public_score == "1.00000"
    with pytest.raises(Exception, match="has no output file"):
        api.competition_submit_code("missing.csv", "no such file", SLUG, kernel="alice/submitter",
                                    kernel_version=pushed.version, quiet=True)


def test_an_unknown_competition_is_refused(kaggle_cli, competition):
    out = kaggle_cli("competitions", "files", "no-such-comp")
    assert "not found" in (out.stdout + out.stderr).lower()

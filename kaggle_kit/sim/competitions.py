"""The competition area: ``competitions.CompetitionApiService`` as the client uses it for a competition's files, their
download, a submission (a file, or a notebook version's output for a code competition) and the submissions list.

A competition is a folder ``<competitions_dir>/<slug>/`` (what sessions attach as the competition source). Its
scoring lives beside it in ``<competitions_dir>/.scoring/<slug>/scoring.json``, which sessions never see:
``{"labels": "<file in that folder>", "score": "package.module:function", "root": "<folder put first on sys.path>"}``,
the function ``(labels: Path, submission: Path) -> float`` a project declares as its ``rehearse.score`` (see
:func:`write_scoring`). Without it a submission is accepted and ends in ERROR ("no scoring"), as a competition
without a solution would.

As on Kaggle, a submission is listed ``PENDING`` first and scored a moment later (``scoring_seconds``); its
public score is a string. A code submission scores the named version's output file: Kaggle reruns the notebook on
the hidden test set instead, which the stand-in has no way to do.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from kaggle_kit.errors import HandleError, KaggleKitError
from kaggle_kit.fileio import atomic_write_json, read_json
from kaggle_kit.handles import parse_competition
from kaggle_kit.sim.rpc import ApiError, Body, Redirect, iso_time, page, rpc, to_int
from kaggle_kit.sim.sessions import TERMINAL_STATUSES, competition_dir
from kaggle_kit.sim.state import StateStore, safe_relative_path
from kaggle_kit.sim.uploads import Uploads

__all__ = ["SCORING_DIR", "SCORING_FILE", "Competitions", "write_scoring"]

SCORING_DIR = ".scoring"
SCORING_FILE = "scoring.json"
# How long a new submission stays PENDING before it is scored.
SCORING_SECONDS = 0.5


def write_scoring(competitions_dir: Path, slug: str, *, labels: Path, score: str, root: Path) -> Path:
    """Give competition ``slug`` its held-out ``labels`` (copied beside it, never mounted) and the scorer
    ``score`` (``module:function``, imported with ``root`` first on ``sys.path``); returns the scoring folder."""
    folder = Path(competitions_dir) / SCORING_DIR / parse_competition(slug)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(labels, folder / Path(labels).name)
    atomic_write_json(folder / SCORING_FILE, {"labels": Path(labels).name, "score": score,
                                              "root": str(Path(root).resolve())})
    return folder


class Competitions:
    """Competitions from the folders ``competitions_dir()`` holds, submissions in the state."""

    def __init__(self, store: StateStore, uploads: Uploads, *, competitions_dir: Callable[[], Path | None],
                 kernel_output: Callable[[str, str, int, str], Path | None],
                 kernel_status: Callable[[str, str, int | None], str | None],
                 scoring_seconds: float = SCORING_SECONDS) -> None:
        self.store = store
        self.uploads = uploads
        self.competitions_dir = competitions_dir
        self.kernel_output = kernel_output
        self.kernel_status = kernel_status
        self.scoring_seconds = float(scoring_seconds)

    def folder(self, name: Any) -> tuple[str, Path]:
        """The slug and folder of competition ``name``; ApiError 404 when there is none."""
        try:
            slug = parse_competition(str(name or ""))
        except HandleError as exc:
            raise ApiError(400, str(exc)) from None
        found = competition_dir(self.competitions_dir(), slug)
        if found is None:
            raise ApiError(404, f"Competition {slug} not found")
        return slug, found

    def _files(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())

    @rpc("competitions.CompetitionApiService/ListDataFiles")
    def list_data_files(self, body: Body, user: str) -> dict[str, Any]:
        _, folder = self.folder(body.get("competitionName"))
        files = [{"ref": p.relative_to(folder).as_posix(), "name": p.relative_to(folder).as_posix(),
                  "totalBytes": p.stat().st_size, "creationDate": iso_time(p.stat().st_mtime)}
                 for p in self._files(folder)]
        chunk, token = page(files, body)
        return {"files": chunk, "nextPageToken": token}

    def _blob(self, path: Path) -> str:
        """``path`` copied into the blob store (which moves what it is given): its SHA-256."""
        sha, _ = self.store.add_blob_file(self._copy(path))
        return sha

    @rpc("competitions.CompetitionApiService/DownloadDataFile")
    def download_data_file(self, body: Body, user: str) -> Redirect:
        slug, folder = self.folder(body.get("competitionName"))
        rel = safe_relative_path(str(body.get("fileName") or ""))
        path = folder / rel if rel else None
        if path is None or not path.is_file():
            raise ApiError(404, f"file {body.get('fileName')!r} not found in competition {slug}")
        return Redirect(self.uploads.blob_url(self._blob(path), path.name))

    @rpc("competitions.CompetitionApiService/DownloadDataFiles")
    def download_data_files(self, body: Body, user: str) -> Redirect:
        slug, folder = self.folder(body.get("competitionName"))
        entries = [{"name": p.relative_to(folder).as_posix(), "blob": self._blob(p), "created": p.stat().st_mtime}
                   for p in self._files(folder)]
        zipped, _ = self.store.build_zip(entries)
        return Redirect(self.uploads.blob_url(zipped, f"{slug}.zip"))

    @rpc("competitions.CompetitionApiService/StartSubmissionUpload")
    def start_submission_upload(self, body: Body, user: str) -> dict[str, Any]:
        self.folder(body.get("competitionName"))
        return self.uploads.start_blob_upload({"name": body.get("fileName"), "contentLength": body.get("contentLength",
                                               0), "type": "SUBMISSION"}, user)

    @rpc("competitions.CompetitionApiService/CreateSubmission")
    def create_submission(self, body: Body, user: str) -> dict[str, Any]:
        slug, _ = self.folder(body.get("competitionName"))
        token = str(body.get("blobFileTokens") or "")
        record = self.uploads.record(token)
        if record is None or record["blob"] is None:
            raise ApiError(400, f"upload token {token!r} is unknown, expired or its upload is incomplete: upload "
                                "the file again")
        ref = self._add(slug, user, file_name=str(record["name"]), blob=str(record["blob"]),
                        description=str(body.get("submissionDescription") or ""), kernel=None)
        return {"message": "Successfully submitted", "ref": ref}

    @rpc("competitions.CompetitionApiService/CreateCodeSubmission")
    def create_code_submission(self, body: Body, user: str) -> dict[str, Any]:
        slug, _ = self.folder(body.get("competitionName"))
        owner, kernel = str(body.get("kernelOwner") or ""), str(body.get("kernelSlug") or "")
        file_name = str(body.get("fileName") or "submission.csv")
        number = to_int(body.get("kernelVersion"), 0) or None
        status = self.kernel_status(owner, kernel, number)
        if status is None:
            raise ApiError(404, f"notebook {owner}/{kernel} (version {number or 'latest'}) not found")
        if status not in TERMINAL_STATUSES:
            raise ApiError(400, f"notebook {owner}/{kernel} version {number or 'latest'} is {status}: submit once "
                                "it has finished")
        if status != "COMPLETE":
            raise ApiError(400, f"notebook {owner}/{kernel} version {number or 'latest'} ended {status}: only a "
                                "version that ran to completion can be submitted")
        path = self.kernel_output(owner, kernel, number or 0, file_name)
        if path is None:
            raise ApiError(400, f"notebook {owner}/{kernel} version {number or 'latest'} has no output file "
                                f"{file_name!r}")
        sha, _ = self.store.add_blob_file(self._copy(path))
        ref = self._add(slug, user, file_name=file_name, blob=sha,
                        description=str(body.get("submissionDescription") or ""),
                        kernel=f"{owner}/{kernel}/{number or 'latest'}")
        return {"message": "Your notebook was submitted", "ref": ref}

    def _copy(self, path: Path) -> Path:
        with tempfile.NamedTemporaryFile(dir=self.store.root / "blobs", prefix=".in-", delete=False) as tmp, \
                path.open("rb") as source:
            shutil.copyfileobj(source, tmp, 1 << 20)
        return Path(tmp.name)

    def _add(self, slug: str, user: str, *, file_name: str, blob: str, description: str, kernel: str | None) -> int:
        with self.store.lock:
            ref = self.store.new_id()
            self.store.data.setdefault("submissions", {}).setdefault(slug, []).append({
                "ref": ref, "date": time.time(), "description": description, "fileName": file_name,
                "blob": blob, "kernel": kernel, "submittedBy": user, "status": "PENDING", "publicScore": None,
                "errorDescription": None})
            self.store.save()
        return ref

    @rpc("competitions.CompetitionApiService/ListSubmissions")
    def list_submissions(self, body: Body, user: str) -> dict[str, Any]:
        slug, _ = self.folder(body.get("competitionName"))
        self._score_due(slug)
        with self.store.lock:
            mine = [dict(s) for s in self.store.data.get("submissions", {}).get(slug, [])
                    if s["submittedBy"] == user]
        mine.sort(key=lambda s: s["date"], reverse=True)
        rows = [{"ref": s["ref"], "date": iso_time(s["date"]), "description": s["description"],
                 "fileName": s["fileName"], "status": s["status"], "submittedBy": s["submittedBy"],
                 "totalBytes": self.store.blob_path(s["blob"]).stat().st_size,
                 **({"publicScore": s["publicScore"], "privateScore": s["publicScore"]}
                    if s["publicScore"] is not None else {}),
                 **({"errorDescription": s["errorDescription"]} if s["errorDescription"] else {})} for s in mine]
        chunk, token = page(rows, body)
        return {"submissions": chunk, "nextPageToken": token}

    def _score_due(self, slug: str) -> None:
        """Score the submissions of ``slug`` that have been PENDING long enough."""
        now = time.time()
        with self.store.lock:
            due = [s for s in self.store.data.get("submissions", {}).get(slug, [])
                   if s["status"] == "PENDING" and now - s["date"] >= self.scoring_seconds]
        for submission in due:
            try:
                value = self._score(slug, self.store.blob_path(submission["blob"]), submission["fileName"])
                update = {"status": "COMPLETE", "publicScore": f"{value:.5f}"}
            except (KaggleKitError, ValueError, OSError) as exc:
                update = {"status": "ERROR", "errorDescription": str(exc)}
            with self.store.lock:
                submission.update(update)
                self.store.save()

    def _score(self, slug: str, blob: Path, file_name: str) -> float:
        from kaggle_kit.project import import_object

        root = self.competitions_dir()
        settings_path = root / SCORING_DIR / slug / SCORING_FILE if root is not None else None
        if settings_path is None or not settings_path.is_file():
            raise KaggleKitError(f"competition {slug} has no scoring: write {SCORING_DIR}/{slug}/{SCORING_FILE} "
                                 "with kaggle_kit.sim.competitions.write_scoring")
        settings = read_json(settings_path)
        if not isinstance(settings, dict) or not all(isinstance(settings.get(k), str)
                                                     for k in ("labels", "score", "root")):
            raise KaggleKitError(f"{settings_path} needs the strings labels, score and root")
        labels = settings_path.parent / Path(settings["labels"]).name
        scorer = import_object(settings["score"], Path(settings["root"]), where=str(settings_path))
        with tempfile.TemporaryDirectory(prefix="kaggle-sim-submission-") as tmp:
            submission = Path(tmp) / Path(file_name).name
            shutil.copyfile(blob, submission)
            return float(scorer(labels, submission))

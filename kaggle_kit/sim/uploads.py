"""Blobs and resumable uploads: ``StartBlobUpload``, the upload PUTs it hands out, and the stored blobs.

The resumable protocol is Google's, as the official client speaks it: a PUT of the bytes (or of a ``Content-Range:
bytes S-E/N`` piece) answers 200 when the upload is whole and 308 with ``Range: bytes=0-K`` while bytes are missing;
``Content-Range: bytes */N`` probes how much arrived; an unknown or expired upload answers 404 (start over).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from kaggle_kit.sim.rpc import BLOB_PATH, UPLOAD_PATH, ApiError, Body, UrlSigner, rpc, to_int
from kaggle_kit.sim.state import StateStore, name_problem

# Google's resumable uploads expire after a week; the client keeps its state for six days.
UPLOAD_TTL_S = 7 * 24 * 3600.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What a PUT to an unknown or expired upload may send: its body is read and thrown away, never stored.
_UNKNOWN_UPLOAD_BYTES = 1 << 62


@dataclass(frozen=True)
class UploadReply:
    """How to answer an upload PUT.

    ``status`` is 200 (whole), 308 (``received`` bytes held so far), 400/404 (``message`` says why), or 0 when the
    connection must be dropped without a reply (an injected cut).
    """

    status: int
    received: int = 0
    message: str = ""


class Uploads:
    """The blob-upload area: upload sessions in the state, their bytes under ``uploads/``, blobs once complete."""

    def __init__(self, store: StateStore, *, base_url: Callable[[], str], signer: UrlSigner,
                 ttl_s: float = UPLOAD_TTL_S) -> None:
        self.store = store
        self.base_url = base_url
        self.signer = signer
        self.ttl_s = float(ttl_s)

    @rpc("blobs.BlobApiService/StartBlobUpload")
    def start_blob_upload(self, body: Body, user: str) -> dict[str, Any]:
        name = body.get("name")
        # The client leaves out fields equal to their default, so an empty file arrives without contentLength.
        length = to_int(body.get("contentLength", 0), -1)
        problem = name_problem(name)
        if problem is None and length < 0:
            problem = f"contentLength {body.get('contentLength')!r} is not a number of bytes >= 0"
        if problem:
            raise ApiError(400, f"StartBlobUpload: {problem}")
        token = secrets.token_hex(16)
        with self.store.lock:
            self.store.data["uploads"][token] = {"name": name, "length": length, "created": time.time(),
                                                 "blob": None, "type": body.get("type") or "DATASET"}
            self.store.save()
        return {"token": token, "createUrl": f"{self.base_url()}{UPLOAD_PATH}{token}"}

    def record(self, token: str) -> dict[str, Any] | None:
        """The upload session ``token``, or None when unknown or expired (an expired one is forgotten)."""
        with self.store.lock:
            record = self.store.data["uploads"].get(token)
            if record is None:
                return None
            if record["blob"] is None and time.time() - record["created"] > self.ttl_s:
                del self.store.data["uploads"][token]
                self.store.save()
                self.store.part_path(token).unlink(missing_ok=True)
                return None
            return record

    def max_put_bytes(self, token: str) -> int:
        """The longest body a PUT to upload ``token`` may carry: its declared length (any length for an unknown
        upload, whose body is only read to be thrown away before the 404)."""
        record = self.record(token)
        return _UNKNOWN_UPLOAD_BYTES if record is None else int(record["length"])

    def receive(self, token: str, content_range: str, chunks: Iterable[bytes], *, cut: bool = False) -> UploadReply:
        """Take one upload PUT: ``content_range`` is its Content-Range header ("" when absent), ``chunks`` its body.

        The body is read to its end whatever the answer, except after a ``cut``, which keeps the first half of what
        was still missing and then asks for the connection to be dropped.
        """
        record = self.record(token)
        if record is None:
            _drain(chunks)
            return UploadReply(404, message="upload session not found or expired: start the upload again")
        part = self.store.part_path(token)
        length = record["length"]
        have = part.stat().st_size if part.exists() else 0
        content_range = content_range.strip()
        if record["blob"] is not None and not content_range.startswith("bytes */"):
            _drain(chunks)  # a completed upload re-sent whole: keep the stored blob
            return UploadReply(200)
        if re.fullmatch(r"bytes \*/(\d+)", content_range):
            _drain(chunks)
            return UploadReply(200) if record["blob"] is not None else UploadReply(308, received=have)
        start = 0
        ranged = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range)
        if content_range and not ranged:
            _drain(chunks)
            return UploadReply(400, message=f"malformed Content-Range {content_range!r}")
        if ranged:
            start = int(ranged.group(1))
            if int(ranged.group(3)) != length or start > have:
                _drain(chunks)
                return UploadReply(400, message=f"Content-Range {content_range!r} does not continue the {have} bytes "
                                                f"received of {length}")
        cut_at = start + max(1, (length - start) // 2) if cut else None
        with open(part, "r+b" if part.exists() else "wb") as out:
            out.seek(start)
            out.truncate()
            written = start
            for chunk in chunks:
                if cut_at is not None and written + len(chunk) >= cut_at:
                    out.write(chunk[: cut_at - written])
                    out.flush()
                    return UploadReply(0, received=cut_at)
                out.write(chunk)
                written += len(chunk)
        if written == length:
            self.finish(token)
            return UploadReply(200)
        if written > length:
            part.unlink(missing_ok=True)
            return UploadReply(400, message=f"received {written} bytes but the upload declared {length}: "
                                            "start it again")
        return UploadReply(308, received=written)

    def finish(self, token: str) -> None:
        """Move a complete upload's bytes into the blob store."""
        sha, _ = self.store.add_blob_file(self.store.part_path(token))
        with self.store.lock:
            self.store.data["uploads"][token]["blob"] = sha
            self.store.save()

    def resolve_tokens(self, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The dataset files that a Create call's ``files`` (upload tokens) stand for, archives unpacked."""
        out: dict[str, dict[str, Any]] = {}
        for entry in files or []:
            token = str(entry.get("token") or "")
            record = self.record(token)
            if record is None or record["blob"] is None:
                raise ApiError(400, f"upload token {token!r} is unknown, expired or its upload is incomplete: "
                                    "upload the file again")
            for item in self.store.expand_upload(record["name"], record["blob"]):
                item["description"] = entry.get("description") or ""
                out[item["name"]] = item
        return sorted(out.values(), key=lambda e: e["name"])

    def blob_url(self, sha: str, name: str) -> str:
        """The signed, expiring URL where blob ``sha`` downloads, named after the last segment of ``name`` (the
        client keeps that name)."""
        return self.signer.url(self.base_url(), f"{BLOB_PATH}{sha}/{PurePosixPath(name).name}")

    def blob_file(self, sha: str) -> Path | None:
        """The stored blob ``sha``, or None when ``sha`` is not a SHA-256 or no such blob is stored."""
        if not _SHA256.fullmatch(sha):
            return None
        path = self.store.blob_path(sha)
        return path if path.is_file() else None


def _drain(chunks: Iterable[bytes]) -> None:
    for _ in chunks:
        pass

"""The offline Kaggle's limits and strictness: settings of one server, Kaggle's values by default.

Kaggle's own limits come from :mod:`kaggle_kit.kaggle_platform` (where each is cited). The rest are the stand-in's
choices where Kaggle publishes nothing, each explained below. Tests that share one server change them for their own
duration with ``SimServer.configured(...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kaggle_kit.errors import ConfigError
from kaggle_kit.kaggle_platform import MAX_CONCURRENT_GPU_SESSIONS, MAX_DATASET_VERSION_FILES, WORKING_DIR_LIMIT_BYTES

__all__ = ["SimSettings", "ZIP_SINGLE_FILES_OVER_BYTES", "SIGNED_URL_TTL_S", "MAX_RPC_BODY_BYTES"]

# Kaggle serves a large single file of a dataset compressed (``<name>.zip``; the client's dataset_download_file
# unwraps it) but publishes no threshold. 1 MiB is small enough that checkpoint and ledger downloads take the zip
# path in the kit's own tests and rehearsals, so code that only handles raw files fails here first.
ZIP_SINGLE_FILES_OVER_BYTES = 1 << 20
# Download URLs (blobs, kernel outputs) are signed and expire, as Kaggle's signed storage URLs do; an hour is enough
# for any download the client starts right after asking.
SIGNED_URL_TTL_S = 3600.0
# The largest RPC body read: SaveKernel carries the notebook inline, and nothing else comes near this.
MAX_RPC_BODY_BYTES = 64 << 20
_REFUSAL_STATUSES = (403, 404, 409)


@dataclass
class SimSettings:
    """What the stand-in enforces.

    Attributes:
        max_dataset_files: files one dataset version may hold (after archives are unpacked).
        max_gpu_sessions: GPU Batch sessions queued or running at once; a push beyond is refused.
        working_dir_limit_bytes: the most a Batch session may leave in ``/kaggle/working``; more ends it in ERROR.
        zip_single_files_over_bytes: a single-file download larger than this arrives as ``<name>.zip``.
        files_refusal_status: what listing or downloading a version that is still processing answers (409; users
            also report 404, and 403 is what a new version meanwhile gets).
        files_delay_s: how long after a version is READY its files are still refused with ``files_refusal_status``
            (users report such a window of several seconds; 0 turns it off).
        signed_url_ttl_s: how long a download URL handed out stays valid.
        max_rpc_body_bytes: the largest RPC body accepted; a larger one is refused from its header with 413.
    """

    max_dataset_files: int = MAX_DATASET_VERSION_FILES
    max_gpu_sessions: int = MAX_CONCURRENT_GPU_SESSIONS
    working_dir_limit_bytes: int = WORKING_DIR_LIMIT_BYTES
    zip_single_files_over_bytes: int = ZIP_SINGLE_FILES_OVER_BYTES
    files_refusal_status: int = 409
    files_delay_s: float = 0.0
    signed_url_ttl_s: float = SIGNED_URL_TTL_S
    max_rpc_body_bytes: int = MAX_RPC_BODY_BYTES

    def check(self) -> None:
        """Raise ConfigError naming the first setting out of range."""
        for name in ("max_dataset_files", "max_gpu_sessions", "max_rpc_body_bytes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"SimServer setting {name}={getattr(self, name)!r} must be at least 1")
        for name in ("working_dir_limit_bytes", "zip_single_files_over_bytes", "files_delay_s"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"SimServer setting {name}={getattr(self, name)!r} must be zero or more")
        if self.signed_url_ttl_s <= 0:
            raise ConfigError(f"SimServer setting signed_url_ttl_s={self.signed_url_ttl_s!r} must be more than 0")
        if self.files_refusal_status not in _REFUSAL_STATUSES:
            raise ConfigError(f"SimServer setting files_refusal_status={self.files_refusal_status!r}: use one of "
                              f"{', '.join(map(str, _REFUSAL_STATUSES))}")

    def replaced(self, **changes: object) -> SimSettings:
        """A checked copy with ``changes``; an unknown name is a ConfigError listing the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown SimServer setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        copy = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        copy.check()
        return copy

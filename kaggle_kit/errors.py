"""The kit's own exceptions: one flat family, each message naming the input and the fix."""

from __future__ import annotations


class KaggleKitError(Exception):
    """Base of every error a user can cause; tracebacks from elsewhere are bugs."""


class RootNotFoundError(KaggleKitError):
    """No project root could be found."""


class ConfigError(KaggleKitError):
    """A configuration file or override is malformed or does not match its schema."""


class CredentialError(KaggleKitError):
    """Kaggle credentials are missing, invalid, or would be written where they must not be."""


class KaggleApiError(KaggleKitError):
    """The Kaggle API (or the offline stand-in) refused or failed a call."""


class InputNotFoundError(KaggleKitError):
    """An attached competition, dataset, model or notebook output is not under the input folder."""


class CheckpointError(KaggleKitError):
    """A checkpoint is missing, corrupt, or incompatible with the model being restored."""


class MirrorError(KaggleKitError):
    """Mirroring checkpoints to a Kaggle Dataset failed for good."""


class AcceleratorError(KaggleKitError):
    """The accelerator does not match the plan (no GPU, a retired GPU, a wasted second GPU)."""


class PreflightError(KaggleKitError):
    """A preflight check failed and the run was not started."""


class MetadataError(KaggleKitError):
    """kernel-metadata.json or dataset-metadata.json is invalid."""


class DeclarationError(MetadataError):
    """The project declaration (``[tool.kaggle-kit]`` or ``kaggle-kit.toml``) is missing or malformed."""


class SandboxError(KaggleKitError):
    """The offline session sandbox could not run a notebook."""


class SubmissionError(KaggleKitError):
    """A submission file is malformed in a way that would fail scoring."""


class WeightsNotFoundError(KaggleKitError):
    """Pretrained weights are configured but not found; never silently replaced by random ones."""


class ReloadError(KaggleKitError):
    """The hot reloader was set up wrongly (no IPython kernel, a root that is not a folder)."""


class DistributedError(KaggleKitError):
    """A DDP rank died before it returned its result."""


class HandleError(KaggleKitError):
    """A Kaggle handle (``owner/slug[/N]``, a model or competition slug) breaks Kaggle's rules."""


class MalformedFileError(KaggleKitError):
    """A file read from disk, a dataset or the network is malformed, too deep, too large or not UTF-8."""


class TransientApiError(KaggleApiError):
    """A Kaggle API call or upload failed in a way that passes: worth trying again after a wait.

    Attributes:
        status: the HTTP status, or None (a dropped connection, an upload that never completed).
        retry_after_s: how long the server asked to wait (429 Retry-After), or None.
        still_processing: the previous dataset version is still being processed (403); wait for it.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None,
                 still_processing: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.still_processing = still_processing


class MirrorStopped(KaggleKitError):
    """The mirror is closing: the wait in progress is abandoned (never reaches the training loop)."""


class PluginError(KaggleKitError):
    """A command plugin could not be loaded: an optional dependency is missing, or the plugin itself is broken."""


class RunError(KaggleKitError):
    """``kaggle-kit run`` stopped a run: the reason and what to do (or its state file is unusable or in use).

    Attributes:
        cause: what stopped it, for callers that act on it: ``no_progress``, ``user_error``, ``quota``, ``budget``,
            ``failed`` (a session ended otherwise), ``submission``, or "" (the state, the lock, an option).
    """

    def __init__(self, message: str, *, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause

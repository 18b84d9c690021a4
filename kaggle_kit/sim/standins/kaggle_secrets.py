"""Stand-in for Kaggle's ``kaggle_secrets`` module, importable inside a sandboxed session.

Same surface as Kaggle's: ``UserSecretsClient().get_secret(label)`` returns the value the user attached under that
label, and the same exception names (``CredentialError``, ``BackendError``, ``ValidationError``). On Kaggle the values
come from a web service; in the sandbox they come from a file the session keeps outside ``/kaggle`` (named by
``KAGGLE_KIT_SIM_SECRETS_FILE``), so no secret is ever in the environment or in the working folder.
"""

from __future__ import annotations

import json
import os

SECRETS_FILE_ENV = "KAGGLE_KIT_SIM_SECRETS_FILE"
TOKEN_ENV = "KAGGLE_USER_SECRETS_TOKEN"


class CredentialError(Exception):
    """The session has no user-secrets token, so no secret can be read."""


class BackendError(Exception):
    """The secret store refused the request, e.g. no secret with that label is attached."""


class ValidationError(Exception):
    """The request was malformed (an empty label)."""


class UserSecretsClient:
    """Reads the secrets attached to this session."""

    def __init__(self) -> None:
        self._token = os.environ.get(TOKEN_ENV)
        if not self._token:
            raise CredentialError(
                f"A user-secrets token is required to use UserSecretsClient, but none was found in the environment "
                f"variable {TOKEN_ENV}: this is not a (sandboxed) Kaggle session."
            )
        self._path = os.environ.get(SECRETS_FILE_ENV, "")

    def _load(self) -> dict[str, str]:
        try:
            with open(self._path, encoding="utf-8") as fh:
                store = json.load(fh)
        except (OSError, ValueError) as exc:
            raise BackendError(f"the session's secret store {self._path!r} cannot be read: {exc}") from None
        if store.get("token") != self._token:
            raise BackendError("the secret store does not belong to this session (user-secrets token mismatch)")
        return dict(store.get("secrets", {}))

    def get_secret(self, label: str) -> str:
        """The value of the secret attached under ``label``.

        Raises:
            ValidationError: ``label`` is empty.
            BackendError: no secret with that label is attached to this session.
        """
        if not label:
            raise ValidationError("Label must be non-empty.")
        secrets = self._load()
        if label not in secrets:
            attached = ", ".join(sorted(secrets)) or "none"
            raise BackendError(
                f"No secret labelled {label!r} is attached to this session (attached: {attached}). Attach it in the "
                f"notebook's Add-ons > Secrets on Kaggle, or with `kaggle-kit sim run --secret {label}=ENV_VAR`."
            )
        return secrets[label]

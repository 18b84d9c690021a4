"""Kaggle handles: one frozen type per identifier, parsed and validated by one rule.

The rule is the one the official client enforces (``kaggle_api_extended._validate_slug_syntax``) with Kaggle's
lengths: a slug is lowercase letters and digits joined by single hyphens; an owner may also use underscores. Kaggle
treats handles case-insensitively, so uppercase input is lowered; anything else that breaks the rule is refused with
what Kaggle would accept instead.

Accepted forms:

* dataset and notebook (kernel): ``owner/slug``, ``owner/slug/N`` (the CLI) or ``owner/slug/versions/N`` (kagglehub);
* model: ``owner/model/framework/variation[/N]`` (``.../versions/N`` too);
* competition: ``slug``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kaggle_kit.errors import HandleError

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; annotations are not evaluated at run time

__all__ = [
    "OwnerSlugHandle",
    "DatasetHandle",
    "KernelHandle",
    "ModelHandle",
    "parse_dataset",
    "parse_kernel",
    "parse_model",
    "parse_competition",
    "parse_owner",
    "slugify",
    "DATASET_SLUG_LENGTH",
    "KERNEL_SLUG_LENGTH",
]

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_OWNER = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")
# (shortest, longest) characters; datasets from the client's own check, kernels from its minimum and the title limit.
DATASET_SLUG_LENGTH = (6, 50)
KERNEL_SLUG_LENGTH = (5, 50)
COMPETITION_SLUG_LENGTH = (1, 80)
MODEL_SLUG_LENGTH = (1, 50)
OWNER_LENGTH = (1, 50)


def slugify(title: str) -> str:
    """The slug Kaggle derives from a title: lowercase, runs of other characters become one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _check(part: str, pattern: re.Pattern[str], lengths: tuple[int, int], what: str, text: str) -> str:
    value = part.lower()
    low, high = lengths
    if not pattern.fullmatch(value):
        suggestion = slugify(part)
        hint = f"; did you mean {suggestion!r}?" if suggestion and pattern.fullmatch(suggestion) else ""
        allowed = ("lowercase letters and digits joined by single hyphens or underscores" if pattern is _OWNER
                   else "lowercase letters and digits joined by single hyphens")
        raise HandleError(f"{what} {part!r} in {text!r} is not valid on Kaggle: use {allowed}{hint}")
    if not low <= len(value) <= high:
        raise HandleError(f"{what} {part!r} in {text!r} has {len(value)} characters; Kaggle allows {low} to {high}")
    return value


def _split_version(parts: list[str], text: str) -> tuple[list[str], int | None]:
    """Strip a trailing ``N`` or ``versions/N``."""
    if len(parts) >= 2 and parts[-2] == "versions":
        head, number = parts[:-2], parts[-1]
    elif parts and parts[-1].isdigit():
        head, number = parts[:-1], parts[-1]
    else:
        return parts, None
    if not number.isdigit() or int(number) < 1:
        raise HandleError(f"version {number!r} in {text!r} must be a positive whole number")
    return head, int(number)


def _parts(text: object, what: str, form: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise HandleError(f"{what} must be a string of the form {form}, got {text!r}")
    stripped = text.strip()
    parts = stripped.split("/")
    if any(p == "" for p in parts):
        raise HandleError(f"{what} {stripped!r} has an empty part; write it as {form}")
    return parts


@dataclass(frozen=True)
class OwnerSlugHandle:
    """``owner/slug`` with an optional version number: the shape of dataset and notebook handles."""

    owner: str
    slug: str
    version: int | None = None

    @property
    def ref(self) -> str:
        """``owner/slug`` without the version."""
        return f"{self.owner}/{self.slug}"

    @property
    def cli_ref(self) -> str:
        """The form the ``kaggle`` CLI and kernel metadata take: ``owner/slug[/N]``."""
        return self.ref if self.version is None else f"{self.ref}/{self.version}"

    def with_version(self, version: int | None) -> Self:
        return dataclasses.replace(self, version=version)

    def __str__(self) -> str:
        return self.cli_ref


class DatasetHandle(OwnerSlugHandle):
    """A dataset: ``owner/slug[/N]``."""


class KernelHandle(OwnerSlugHandle):
    """A notebook (kernel): ``owner/slug[/N]``."""


@dataclass(frozen=True)
class ModelHandle:
    """``owner/model/framework/variation[/N]`` of a Kaggle Model."""

    owner: str
    model: str
    framework: str
    variation: str
    version: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.model}/{self.framework}/{self.variation}"

    @property
    def cli_ref(self) -> str:
        return self.ref if self.version is None else f"{self.ref}/{self.version}"

    def __str__(self) -> str:
        return self.cli_ref


def parse_owner(text: object, *, what: str = "owner") -> str:
    """A Kaggle user or organisation name, lowered."""
    if not isinstance(text, str) or not text.strip() or "/" in text:
        raise HandleError(f"{what} must be a Kaggle user name without '/', got {text!r}")
    return _check(text.strip(), _OWNER, OWNER_LENGTH, what, text)


def _owner_slug(text: object, what: str, lengths: tuple[int, int], *, versioned: bool) -> tuple[str, str, int | None]:
    form = "owner/slug" + ("[/N]" if versioned else "")
    parts = _parts(text, what, form)
    head, version = _split_version(parts, str(text)) if versioned else (parts, None)
    if len(head) != 2:
        raise HandleError(f"{what} {text!r} must have the form {form}")
    owner = _check(head[0], _OWNER, OWNER_LENGTH, "owner", str(text))
    slug = _check(head[1], _SLUG, lengths, f"{what} slug", str(text))
    return owner, slug, version


def parse_dataset(text: object, *, what: str = "dataset", versioned: bool = True) -> DatasetHandle:
    """``owner/slug``, ``owner/slug/N`` or ``owner/slug/versions/N`` (``versioned=False``: no version allowed)."""
    return DatasetHandle(*_owner_slug(text, what, DATASET_SLUG_LENGTH, versioned=versioned))


def parse_kernel(text: object, *, what: str = "notebook", versioned: bool = True) -> KernelHandle:
    """``owner/slug``, ``owner/slug/N`` or ``owner/slug/versions/N`` (``versioned=False``: no version allowed)."""
    return KernelHandle(*_owner_slug(text, what, KERNEL_SLUG_LENGTH, versioned=versioned))


def parse_model(text: object, *, what: str = "model") -> ModelHandle:
    form = "owner/model/framework/variation[/N]"
    parts = _parts(text, what, form)
    head, version = _split_version(parts, str(text))
    if len(head) != 4:
        raise HandleError(f"{what} {text!r} must have the form {form}")
    owner = _check(head[0], _OWNER, OWNER_LENGTH, "owner", str(text))
    model, framework, variation = (_check(p, _SLUG, MODEL_SLUG_LENGTH, f"{what} {name}", str(text))
                                   for p, name in zip(head[1:], ("slug", "framework", "variation")))
    return ModelHandle(owner, model, framework, variation, version)


def parse_competition(text: object, *, what: str = "competition") -> str:
    parts = _parts(text, what, "a competition slug")
    if len(parts) != 1:
        raise HandleError(f"{what} {text!r} must be a competition slug without '/', e.g. 'titanic'")
    return _check(parts[0], _SLUG, COMPETITION_SLUG_LENGTH, f"{what} slug", str(text))

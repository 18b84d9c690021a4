"""Run-length encoding exactly as the competition scores it.

Pixels are numbered in column-major (Fortran) order and starts are 1-based. An instance is a JSON list
``[start, length, start, length, ...]``; an annotation is the literal ``authentic`` or instances joined by ``;``.
"""

from __future__ import annotations

import json

import numpy as np

from kaggle_kit.errors import MalformedFileError, SubmissionError
from kaggle_kit.fileio import loads_json

AUTHENTIC = "authentic"
# Decoding keeps one byte per pixel and instance; past this an annotation is refused rather than exhausting memory.
MAX_DECODED_BYTES = 2 << 30


def encode(mask: np.ndarray) -> list[int]:
    """Encode one instance mask.

    Args:
        mask: (H, W) array; nonzero pixels belong to the instance.

    Returns:
        ``[start, length, ...]`` with 1-based column-major starts, ascending, runs never touching.
    """
    if mask.ndim != 2:
        raise ValueError(f"encode expects an (H, W) mask, got shape {tuple(mask.shape)}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    edges = np.diff(np.concatenate(([False], flat, [False])).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    runs = np.empty(2 * len(starts), dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return [int(v) for v in runs]


def _check_runs(runs: list[int], n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    if len(runs) % 2:
        raise SubmissionError(f"odd number of values ({len(runs)}): an instance is [start, length, ...] pairs")
    try:
        arr = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    except OverflowError:
        raise SubmissionError(f"a value is beyond the image's {n_pixels} pixels (and beyond 64-bit integers)") from None
    starts, lengths = arr[:, 0], arr[:, 1]
    if len(starts) == 0:
        return starts, lengths
    huge = np.flatnonzero((starts > n_pixels) | (lengths > n_pixels))
    if len(huge):  # refused before start + length could overflow
        i = huge[0]
        raise SubmissionError(f"run {i} (start {starts[i]}, length {lengths[i]}) is beyond the image's {n_pixels} "
                              "pixels")
    bad = np.flatnonzero(lengths < 1)
    if len(bad):
        raise SubmissionError(f"run {bad[0]} has length {lengths[bad[0]]}; lengths must be >= 1")
    if starts[0] < 1:
        raise SubmissionError(f"start {starts[0]} is below 1; starts are 1-based")
    order = np.flatnonzero(starts[1:] <= starts[:-1])
    if len(order):
        i = order[0]
        raise SubmissionError(f"starts not ascending: run {i + 1} starts at {starts[i + 1]} after {starts[i]}")
    ends = starts + lengths  # exclusive, 1-based
    overlap = np.flatnonzero(starts[1:] < ends[:-1])
    if len(overlap):
        i = overlap[0]
        raise SubmissionError(
            f"runs overlap: run {i} covers {starts[i]}..{ends[i] - 1} and run {i + 1} starts at {starts[i + 1]}"
        )
    if ends[-1] - 1 > n_pixels:
        raise SubmissionError(f"last run ends at pixel {ends[-1] - 1}, beyond the image's {n_pixels} pixels")
    return starts, lengths


def decode_flat(runs: list[int], n_pixels: int) -> np.ndarray:
    """Decode one instance into a flat column-major boolean vector of ``n_pixels``.

    Raises:
        SubmissionError: odd length, non-positive lengths, starts not ascending, overlapping runs, or runs past the end.
    """
    starts, lengths = _check_runs(runs, n_pixels)
    # Runs never overlap (checked), so +1 at each start and -1 at each end, summed, marks exactly the covered pixels:
    # vectorised, since a large mask's RLE holds hundreds of thousands of runs.
    edges = np.zeros(n_pixels + 1, dtype=np.int8)
    edges[starts - 1] = 1
    edges[starts - 1 + lengths] -= 1  # ends ascend, so no index repeats
    return np.cumsum(edges[:-1], dtype=np.int8).astype(bool)


def decode(runs: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Decode one instance into an (H, W) boolean mask (see `decode_flat` for refusals)."""
    h, w = shape
    return decode_flat(runs, h * w).reshape((h, w), order="F")


def _parse_instance(text: str) -> list[int]:
    try:
        value = loads_json(text, where="the instance", max_depth=1)
    except MalformedFileError as exc:
        raise SubmissionError(f"instance {text[:40]!r} is not a JSON list of integers ({exc})") from None
    if not isinstance(value, list) or not all(type(v) is int for v in value):  # bool is not int here
        raise SubmissionError(f"instance {text[:40]!r} must be a JSON list of integers")
    return value


def parse_annotation(annotation: str | None) -> list[list[int]] | None:
    """Parse an annotation into run lists; ``None`` means ``authentic``.

    Raises:
        SubmissionError: the annotation is empty, NaN, or an instance is not a JSON list of integers.
    """
    if annotation is None or not isinstance(annotation, str):
        raise SubmissionError("annotation is missing (empty or NaN crashes the scorer); write 'authentic' instead")
    text = annotation.strip()
    if text == "" or text.lower() == "nan":
        raise SubmissionError("annotation is empty or NaN, which crashes the scorer; write 'authentic' instead")
    if text == AUTHENTIC:
        return None
    return [_parse_instance(part.strip()) for part in text.split(";")]


def decode_annotation_flat(annotation: str, n_pixels: int) -> list[np.ndarray] | None:
    """Decode every instance of an annotation into flat column-major vectors; ``None`` for ``authentic``."""
    instances = parse_annotation(annotation)
    if instances is None:
        return None
    if len(instances) * n_pixels > MAX_DECODED_BYTES:
        raise SubmissionError(f"{len(instances)} instances of a {n_pixels}-pixel image would take "
                              f"{len(instances) * n_pixels / 2**30:.1f} GiB to decode (at most "
                              f"{MAX_DECODED_BYTES / 2**30:.0f}); merge or drop small instances")
    return [decode_flat(runs, n_pixels) for runs in instances]


def decode_annotation(annotation: str, shape: tuple[int, int]) -> np.ndarray | None:
    """Decode an annotation into (N, H, W) boolean masks; ``None`` for ``authentic``."""
    instances = parse_annotation(annotation)
    if instances is None:
        return None
    h, w = shape
    if not instances:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack([decode(runs, (h, w)) for runs in instances])


def encode_annotation(masks: np.ndarray | list[np.ndarray]) -> str:
    """Encode instance masks into an annotation; no instance (or only empty ones) gives ``authentic``."""
    parts = [json.dumps(encode(m), separators=(", ", ": ")) for m in masks if np.any(m)]
    return ";".join(parts) if parts else AUTHENTIC

"""Training state to JSON plus a flat tensor dict, and back, with nothing pickled.

:func:`encode` turns nested state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays) into JSON-able data,
moving every tensor into a flat ``{path: tensor}`` dict and leaving a ``{"__tensor__": path}`` reference in its
place; :func:`decode` is its inverse. The RNG states of python, numpy, torch and CUDA travel the same way.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import random
import sys
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from kaggle_kit.errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = [
    "encode",
    "decode",
    "capture_rng_state",
    "RngState",
    "check_rng_state",
    "apply_rng_state",
    "unwrap_model",
    "tensor_shapes",
    "shape_differences",
    "library_versions",
]


def encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn ``obj`` into JSON-able data, moving every tensor into ``tensors`` under its path.

    Raises:
        CheckpointError: ``obj`` holds something that cannot travel without pickling, named by its path.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": path}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {
            "__items__": [
                [encode(k, f"{path}/key{i}", tensors), encode(v, f"{path}/{k}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    raise CheckpointError(
        f"cannot store {type(obj).__name__} at {path!r} in a checkpoint: only tensors, numpy arrays, numbers, "
        "strings, lists, tuples and dicts travel (no pickled objects); convert it or leave it out of the state"
    )


def decode(obj: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    """Inverse of :func:`encode`; a reference to a missing tensor is an error naming the checkpoint ``where``."""
    if isinstance(obj, list):
        return [decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((tag, value),) = obj.items()
        if tag in ("__tensor__", "__ndarray__"):
            if not isinstance(value, str) or value not in tensors:
                raise CheckpointError(f"{where}: the state refers to a tensor {value!r} missing from the .pt file")
            return tensors[value] if tag == "__tensor__" else tensors[value].numpy()
        if tag == "__tuple__" and isinstance(value, list):
            return tuple(decode(v, tensors, where) for v in value)
        if tag == "__items__" and isinstance(value, list):
            items = {}
            for pair in value:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise CheckpointError(f"{where}: a mapping entry is not a [key, value] pair")
                try:
                    items[_hashable(decode(pair[0], tensors, where))] = decode(pair[1], tensors, where)
                except TypeError as exc:
                    raise CheckpointError(f"{where}: a mapping key cannot be a key ({exc})") from exc
            return items
    return {k: decode(v, tensors, where) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def capture_rng_state(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The python, numpy, torch and (when initialised) CUDA RNG states, encoded; tensors go into ``tensors``."""
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": kind,
            "keys": base64.b64encode(np.asarray(keys, dtype="<u4").tobytes()).decode(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": {"__tensor__": "rng/torch"},
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = cuda_state
            state["cuda"].append({"__tensor__": f"rng/cuda/{i}"})
    return state


@dataclasses.dataclass(frozen=True)
class RngState:
    """Recorded RNG states, checked and ready to set (see :func:`check_rng_state`)."""

    python: tuple[Any, ...]
    numpy: tuple[Any, ...]
    torch: torch.Tensor
    cuda: tuple[torch.Tensor, ...]


def _byte_tensor(value: Any, what: str, where: str) -> torch.Tensor:
    import torch

    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        raise CheckpointError(f"{where}: the {what} RNG state is not a 1-D uint8 tensor")
    return value


def check_rng_state(state: Any, where: str) -> RngState:
    """Check the RNG states :func:`capture_rng_state` recorded (decoded) on scratch generators; nothing global changes.

    Raises:
        CheckpointError: the recorded state is malformed, naming ``where``.
    """
    import torch

    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: the RNG state is not an object")
    try:
        version, internal, gauss = state["python"]
        python = (int(version), tuple(int(x) for x in internal), None if gauss is None else float(gauss))
        random.Random().setstate(python)
        np_state = state["numpy"]
        keys = np.frombuffer(base64.b64decode(np_state["keys"], validate=True), dtype="<u4").astype(np.uint32)
        numpy_state = (str(np_state["kind"]), keys, int(np_state["pos"]), int(np_state["has_gauss"]),
                       float(np_state["cached_gaussian"]))
        np.random.RandomState().set_state(numpy_state)
        torch_state = _byte_tensor(state["torch"], "torch", where)
        torch.Generator().set_state(torch_state)
        cuda = state.get("cuda") or []
        if not isinstance(cuda, list):
            raise CheckpointError(f"{where}: the CUDA RNG states are not a list")
        cuda_states = tuple(_byte_tensor(c, "CUDA", where) for c in cuda)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError, binascii.Error) as exc:
        raise CheckpointError(f"{where}: the RNG state is malformed ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return RngState(python=python, numpy=numpy_state, torch=torch_state, cuda=cuda_states)


def apply_rng_state(rng: RngState, where: str) -> None:
    """Set the python, numpy, torch and CUDA RNGs from a state :func:`check_rng_state` accepted."""
    import torch

    random.setstate(rng.python)
    np.random.set_state(rng.numpy)
    torch.set_rng_state(rng.torch)
    if rng.cuda and torch.cuda.is_available():
        count = min(len(rng.cuda), torch.cuda.device_count())
        for i in range(count):
            torch.cuda.set_rng_state(rng.cuda[i], i)
        if len(rng.cuda) != torch.cuda.device_count():
            warnings.warn(
                f"{where}: saved with {len(rng.cuda)} CUDA RNG states, this machine has "
                f"{torch.cuda.device_count()} GPUs; restored the first {count}",
                stacklevel=3,
            )


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose state dict keys carry no DataParallel/DDP/compile prefix."""
    import torch

    inner = getattr(model, "_orig_mod", model)
    if isinstance(inner, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        inner = inner.module
    return getattr(inner, "_orig_mod", inner)


def tensor_shapes(state_dict: Mapping[str, Any]) -> dict[str, list[int]]:
    """``{key: shape}`` of the tensors in a state dict."""
    import torch

    return {k: list(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def shape_differences(saved: Mapping[str, Any], current: Mapping[str, list[int]]) -> list[str]:
    """What differs between the saved shapes and the model's, one line per tensor."""
    diffs = []
    for key, shape in current.items():
        if key not in saved:
            diffs.append(f"{key} missing from the checkpoint")
        elif list(saved[key]) != list(shape):
            diffs.append(f"{key}: checkpoint {list(saved[key])} vs model {list(shape)}")
    diffs.extend(f"{key} in the checkpoint but not in the model" for key in saved if key not in current)
    return diffs


def library_versions() -> dict[str, str]:
    """The versions that wrote a checkpoint: torch, numpy, python, timm and the kit."""
    import torch

    from importlib import metadata

    found = {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    for dist in ("timm", "kaggle-kit"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "absent"
    return found

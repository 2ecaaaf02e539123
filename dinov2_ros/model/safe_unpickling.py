"""`torch.load(weights_only=True)` that also accepts the numpy values mmcv-style checkpoints carry.

Meta's depth-head files are mmcv checkpoints, `{"meta": ..., "state_dict": ...}`, and mmcv writes
numpy scalars and arrays into `meta` (epochs, scores, seeds). Safe loading refuses every global it
does not know, so such a file needs the few numpy globals that rebuild plain numbers and arrays:
`scalar` and `_reconstruct` from `numpy._core.multiarray` (spelt `numpy.core.multiarray` in files
written by numpy 1.x), `numpy.ndarray`, `numpy.dtype` and the dtype classes of booleans and numbers
(found by saving each kind with torch.save and loading it back; see tests/model/test_checkpoint.py).
Nothing else is allowed: there is no fallback to full unpickling, which can run arbitrary code.
Tested with torch 2.13; allowing a global under an alternative name needs torch >= 2.6, and torch
< 2.5 (no `safe_globals`) loads files without numpy values only.
"""

from __future__ import annotations

import os

import numpy as np
import torch

try:
    from numpy._core import multiarray as _multiarray  # numpy >= 2 (and the 1.26 forward alias)
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray


def _numeric_dtype_classes() -> list[type]:
    kinds = {t for t in np.sctypeDict.values() if issubclass(t, (np.number, np.bool_))}
    return sorted({type(np.dtype(t)) for t in kinds if not issubclass(t, np.timedelta64)}, key=lambda c: c.__name__)


def _under_both_names(function: object, name: str) -> list[object]:
    """The function under its own name and as numpy 1.x and numpy 2 pickles name it."""
    return [function, (function, f"numpy.core.multiarray.{name}"), (function, f"numpy._core.multiarray.{name}")]


SAFE_NUMPY_GLOBALS: list[object] = [
    *_under_both_names(_multiarray.scalar, "scalar"),
    *_under_both_names(_multiarray._reconstruct, "_reconstruct"),
    np.ndarray,
    np.dtype,
    *_numeric_dtype_classes(),
]


def load_weights_only(path: str | os.PathLike[str]) -> object:
    """torch.load(path, map_location="cpu", weights_only=True) with SAFE_NUMPY_GLOBALS allowed.

    Raises pickle.UnpicklingError ("Weights only load failed ...") for any other Python object, and
    what torch raises for damaged files.
    """
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5
        return torch.load(path, map_location="cpu", weights_only=True)
    with safe_globals(SAFE_NUMPY_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)

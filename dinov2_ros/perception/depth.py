"""Depth images as REP 118 defines them: 32FC1 in metres or 16UC1 in millimetres, 0 and NaN meaning "no
return"; in here always float32 metres with NaN where there is no return."""

from __future__ import annotations

import numpy as np

# REP 118's depth encodings and their element types (the ROS layer reads messages of these)
DEPTH_DTYPES = {"32FC1": np.dtype(np.float32), "16UC1": np.dtype(np.uint16)}


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """REP 118 depth image -> float32 metres with NaN wherever the sensor gave no return."""
    if encoding not in DEPTH_DTYPES:
        raise ValueError(f"depth encoding {encoding!r} is not supported; publish {' or '.join(DEPTH_DTYPES)}")
    expected = DEPTH_DTYPES[encoding]
    if depth.dtype.newbyteorder("=") != expected or depth.ndim != 2:  # either byte order (a message's view)
        raise ValueError(f"{encoding} depth must be a 2D {expected.name} array, got {depth.dtype} {depth.shape}")
    # astype copies, so the caller's array (a view of a message) is never written
    metres = depth.astype(np.float32) * np.float32(0.001) if encoding == "16UC1" else depth.astype(np.float32)
    return nan_where_no_return(metres)


def nan_where_no_return(metres: np.ndarray) -> np.ndarray:
    """Set NaN, in place, wherever depth in metres is not a positive finite value; returns `metres`."""
    np.copyto(metres, np.nan, where=~((metres > 0) & (metres < np.inf)))  # NaN compares False: stays NaN
    return metres

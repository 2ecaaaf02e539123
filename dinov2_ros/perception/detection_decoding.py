"""The graph's detection outputs in camera terms: rows kept by score, patch-grid masks warped to camera
pixels (see docs/architecture.md for the rows' layout)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dinov2_ros.runtime.graph_spec import PATCH_SIZE, GraphSpec


@dataclass(frozen=True)
class DecodedRows:
    """The kept rows of one frame's `detections` output: `rows` (K,) indices into it, `boxes` (K, 4)
    float32 xyxy camera pixels, `scores` (K,) in [0, 1], `classes` (K,) class ids."""

    rows: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> DecodedRows:
        """The rows at positions `keep` (an index array or a (K,) bool mask)."""
        return DecodedRows(self.rows[keep], self.boxes[keep], self.scores[keep], self.classes[keep])


def decode_rows(rows: np.ndarray, score_threshold: float) -> DecodedRows:
    """The rows (K, 6) `x1, y1, x2, y2, score, class` that report a detection at `score_threshold` or
    above. A row with a non-finite box or score (an fp16 engine overflowing) is dropped, not the frame;
    empty rows (score 0, class -1) are never kept."""
    finite = np.isfinite(rows[:, :5]).all(axis=1)
    keep = np.flatnonzero(finite & (rows[:, 4] >= score_threshold) & (rows[:, 4] > 0) & (rows[:, 5] >= 0))
    return DecodedRows(
        keep, rows[keep, :4].astype(np.float32), rows[keep, 4].astype(np.float64), rows[keep, 5].astype(int)
    )


def camera_to_grid_affine(spec: GraphSpec) -> np.ndarray:
    """Affine map camera pixel index -> patch-grid sample position (pixel centres on both sides)."""
    m = spec.mapping()
    sx, sy = m.scale_x / PATCH_SIZE, m.scale_y / PATCH_SIZE
    tx = (0.5 * m.scale_x + m.offset_x) / PATCH_SIZE - 0.5
    ty = (0.5 * m.scale_y + m.offset_y) / PATCH_SIZE - 0.5
    return np.array([[sx, 0.0, tx], [0.0, sy, ty]], np.float64)


def box_window(box, size: tuple[int, int], grow: int = 0) -> tuple[slice, slice]:
    """The rows and columns of an image of `size` (height, width) that `box` (x1, y1, x2, y2 pixels)
    covers, grown by `grow` pixels, clipped to the image (empty slices for a box outside it): where a
    detection's camera mask can be set (`mask_to_camera` sets it there only)."""
    height, width = size
    x1, y1 = max(math.floor(box[0]) - grow, 0), max(math.floor(box[1]) - grow, 0)
    x2, y2 = min(math.ceil(box[2]) + grow, width), min(math.ceil(box[3]) + grow, height)
    return slice(y1, max(y2, y1)), slice(x1, max(x2, x1))


def mask_to_camera(
    logits: np.ndarray, box: np.ndarray, camera_to_grid: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Patch-grid mask logits (h, w) -> (H, W) bool camera mask, evaluated inside `box` only."""
    mask = np.zeros(size, bool)
    rows, cols = box_window(box, size)
    y1, y2, x1, x2 = rows.start, rows.stop, cols.start, cols.stop
    if x2 <= x1 or y2 <= y1:
        return mask
    shifted = camera_to_grid.copy()
    shifted[:, 2] += camera_to_grid[:, :2] @ (x1, y1)
    roi = cv2.warpAffine(
        logits.astype(np.float32, copy=False),
        shifted,
        (x2 - x1, y2 - y1),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask[y1:y2, x1:x2] = roi > 0
    return mask

"""The order a planner should pick a frame's parts in, knowing what lies on what.

Parts in a bin or on a tray overlap, and picking one that another rests on drags or drops both. From
the masks and the depth the objects were lifted from (`FrameResult.object_depth`):
- the support plane (the table or bin floor): a RANSAC plane through the depth outside every mask,
  its normal toward the camera; heights are distances above it along that normal;
- a part's top height: the 95th percentile of its pixels' heights;
- part B lies on (or over) part A when their masks touch (within `CONTACT_PX` pixels) and, along
  the contact, B's pixels stand higher than A's by more than `STEP_M`: nearer to the camera along
  the support normal, which is what resting on A (or hanging over it) looks like from above. A
  taller part standing beside A shows the camera its side down to the table at the contact, so it
  is not counted; one that hides part of A from the camera is, which also keeps A from a top-down grasp.
- free: nothing lies on it. Candidates are the free parts with a 3D pose, highest top first (the
  top of a pile, the most exposed), then by score.
Without a plane (almost no background visible) the camera's optical axis stands in for the normal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.detection_decoding import box_window
from dinov2_ros.perception.frame import FrameResult

CONTACT_PX = 3  # masks this close touch (mask edges are a pixel or two off)
STEP_M = 0.005  # B stands this much higher than A along their contact: B lies on A (1 mm depth noise: 5 sigma)
MIN_CONTACT_PIXELS = 6  # fewer pixels on either side of a contact: a corner touch, not counted
PLANE_GRID = 4  # the support plane is fitted on every PLANE_GRID-th row and column outside the masks
PLANE_HYPOTHESES = 64
PLANE_VOTERS = 2048  # background points, evenly spread, that score the hypotheses (all of them refit the best)
PLANE_BAND_M = 0.004  # a background point within this of the plane is on it
MIN_PLANE_POINTS = 200


@dataclass(frozen=True)
class PickDecision:
    """One detection's place in the pick order: `index` into FrameResult.detections, its top height (m
    above the support plane, NaN without depth), whether it is `free`, the detections lying on it
    (`under`, indices), and `reason`, why it is held back ("" when free)."""

    index: int
    top_height_m: float
    free: bool
    under: tuple[int, ...] = ()
    reason: str = ""


PickOrder = tuple[list["PickDecision"], list["PickDecision"]]  # (candidates in pick order, held back)


def pick_order(result: FrameResult, ids: list[int] | None = None) -> PickOrder:
    """(candidates in the order to pick them, the detections held back) of `result`'s detections with a
    3D pose. `ids` name the detections in the reasons (their published `id`s; default: their indices)."""
    depth, camera = result.object_depth, result.frame.camera_model
    posed = [k for k, detection in enumerate(result.detections) if detection.centre is not None]
    if depth is None or camera is None or not posed or result.without_3d is not None:
        return [], []
    ids = ids if ids is not None else list(range(len(result.detections)))
    masks = [_mask_of(result.detections[k], depth.shape) for k in range(len(result.detections))]
    normal, offset = support_plane(depth, camera, masks)
    heights = _height_map(depth, camera, normal, offset, result.detections, masks)
    tops = {k: _top_height(heights, masks[k], result.detections[k].box) for k in posed}
    under: dict[int, list[tuple[int, float]]] = {k: [] for k in posed}
    boxes = [detection.box for detection in result.detections]
    for a, b in itertools.combinations(range(len(result.detections)), 2):  # each contact measured once
        if a in under or b in under:
            b_over_a, a_over_b = _steps_at_contact(heights, masks[a], masks[b], boxes[a], boxes[b])
            for lower, upper, step in ((a, b, b_over_a), (b, a, a_over_b)):
                if lower in under and step is not None and step > STEP_M:
                    under[lower].append((upper, step))
    decisions = []
    for k in posed:
        above = under[k]
        reason = "; ".join(
            f"under #{ids[b]} (its edge {1000 * step:.0f} mm higher along the support normal)" for b, step in above
        )
        decisions.append(PickDecision(k, tops[k], not above, tuple(b for b, _ in above), reason))
    free = [d for d in decisions if d.free]
    free.sort(key=lambda d: (-np.nan_to_num(d.top_height_m, nan=-np.inf), -result.detections[d.index].score))
    return free, [d for d in decisions if not d.free]


def support_plane(depth: np.ndarray, camera: PinholeCameraModel, masks: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """(unit normal toward the camera, offset) of the plane n . p + offset = 0 through the depth outside
    every mask (grown by a grid cell), by RANSAC on every PLANE_GRID-th row and column; the optical
    axis' plane through the farthest such point when fewer than MIN_PLANE_POINTS of them have depth."""
    grid = (slice(None, None, PLANE_GRID), slice(None, None, PLANE_GRID))
    covered = np.zeros(depth[grid].shape, np.uint8)
    for mask in masks:
        covered |= mask[grid]
    outside = ~cv2.dilate(covered, np.ones((3, 3), np.uint8)).astype(bool)
    rows, cols = np.mgrid[0 : depth.shape[0] : PLANE_GRID, 0 : depth.shape[1] : PLANE_GRID]
    z = depth[grid]
    chosen = outside & np.isfinite(z)
    if np.count_nonzero(chosen) < MIN_PLANE_POINTS:
        far = float(np.nanmax(depth)) if np.isfinite(depth).any() else 0.0
        return np.array([0.0, 0.0, -1.0]), far
    points = camera.back_project_pixels(cols[chosen], rows[chosen], z[chosen])
    samples = np.random.default_rng(0).integers(0, len(points), (PLANE_HYPOTHESES, 3))
    normals = np.cross(points[samples[:, 1]] - points[samples[:, 0]], points[samples[:, 2]] - points[samples[:, 0]])
    lengths = np.linalg.norm(normals, axis=1)
    normals = normals[lengths > 1e-9] / lengths[lengths > 1e-9, None]
    offsets = -np.sum(normals * points[samples[lengths > 1e-9, 0]], axis=1)
    voters = points[np.linspace(0, len(points) - 1, min(PLANE_VOTERS, len(points))).astype(np.int64)]
    votes = np.count_nonzero(np.abs(voters @ normals.T + offsets) <= PLANE_BAND_M, axis=0)
    best = int(np.argmax(votes))
    inliers = points[np.abs(points @ normals[best] + offsets[best]) <= PLANE_BAND_M]
    centroid = inliers.mean(axis=0)
    normal = np.linalg.svd(inliers - centroid, full_matrices=False)[2][-1]  # least squares on the inliers
    if normal[2] > 0:  # toward the camera: the camera looks along +z
        normal = -normal
    return normal, float(-normal @ centroid)


def _mask_of(detection, shape: tuple[int, int]) -> np.ndarray:
    if detection.mask is not None:
        return detection.mask
    mask = np.zeros(shape, bool)
    x1, y1, x2, y2 = (round(float(v)) for v in detection.box)
    mask[max(y1, 0) : y2, max(x1, 0) : x2] = True
    return mask


def _height_map(depth, camera, normal, offset, detections, masks) -> np.ndarray:
    """Heights (m) above the support plane of the masks' pixels with depth (each looked at inside its
    box only: masks are empty outside it); NaN elsewhere."""
    heights = np.full(depth.shape, np.nan, np.float32)
    for detection, mask in zip(detections, masks, strict=True):
        window = box_window(detection.box, depth.shape)
        rows, cols = np.nonzero(mask[window] & np.isfinite(depth[window]))
        rows, cols = rows + window[0].start, cols + window[1].start
        heights[rows, cols] = camera.back_project_pixels(cols, rows, depth[rows, cols]) @ normal + offset
    return heights


def _top_height(heights: np.ndarray, mask: np.ndarray, box) -> float:
    window = box_window(box, heights.shape)
    values = heights[window][mask[window]]
    values = values[np.isfinite(values)]
    return float(np.percentile(values, 95)) if values.size else float("nan")


def _steps_at_contact(heights, mask_a, mask_b, box_a, box_b) -> tuple[float | None, float | None]:
    """(how much higher B's pixels stand than A's along their contact, the same of A over B) in m, by
    the medians of each side's band: one's pixels within CONTACT_PX of the other, less the other's own
    pixels where the masks overlap. None for a direction whose bands hold fewer than
    MIN_CONTACT_PIXELS (the masks do not touch)."""
    grow = CONTACT_PX + 1
    if min(box_a[2], box_b[2]) + grow < max(box_a[0], box_b[0]) or min(box_a[3], box_b[3]) + grow < max(
        box_a[1], box_b[1]
    ):
        return None, None  # boxes apart: no contact
    union = (min(box_a[0], box_b[0]), min(box_a[1], box_b[1]), max(box_a[2], box_b[2]), max(box_a[3], box_b[3]))
    window = box_window(union, heights.shape, grow)
    a, b = mask_a[window], mask_b[window]
    kernel = np.ones((2 * CONTACT_PX + 1,) * 2, np.uint8)
    near_a, near_b = (cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in (a, b))
    local = heights[window]

    def step(lower, near_upper, upper, near_lower) -> float | None:
        low, high = local[lower & near_upper & ~upper], local[upper & near_lower]
        low, high = low[np.isfinite(low)], high[np.isfinite(high)]
        if low.size < MIN_CONTACT_PIXELS or high.size < MIN_CONTACT_PIXELS:
            return None
        return float(np.median(high) - np.median(low))

    return step(a, near_b, b, near_a), step(b, near_a, a, near_b)

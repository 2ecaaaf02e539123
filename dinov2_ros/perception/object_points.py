"""Each published object's own points: the segmented cloud grasp planners take (GPD, Contact-GraspNet,
MoveIt's perception pipeline), one cloud per frame with every point labelled by its object.

An object's points are its mask's pixels (its box's, without a mask) with valid depth, every
`stride`-th pixel in each direction, back-projected with the camera model, and kept where they lie in
the object's 3D box grown by `MARGIN_M`: the points its pose was measured from, not the table or a
neighbour seen through the mask's coarse edge. For an oriented box (standing on its support plane),
points within `MIN_HEIGHT_M` of the plane are the plane's, as the fit counts them, and are left out.
Depth is the one the poses were lifted from (`FrameResult.object_depth`): the sensor's with its holes
filled where the frame has one, else the model's. Points are metres
in the camera optical frame; colours come from the camera image at the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinov2_ros.perception.frame import Detection, FrameResult
from dinov2_ros.perception.oriented_box import MIN_HEIGHT_M

MARGIN_M = 0.005  # depth noise and the pixel footprint at a box face


@dataclass(frozen=True)
class ObjectPoints:
    """The points of a frame's objects: `points` (N, 3) float32 metres, optical frame; `rgb` (N, 3)
    uint8; `ids` (N,) uint32, each point's object id (Detection3D/2D `id`: the track id)."""

    points: np.ndarray
    rgb: np.ndarray
    ids: np.ndarray


def object_points(result: FrameResult, ids: list[int], stride: int = 2) -> ObjectPoints:
    """The points of each detection of `result` that has a 3D pose, labelled with `ids[k]` (the id
    detection k is published with). ValueError for a stride below 1."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    frame = result.frame
    depth = result.object_depth
    camera = frame.camera_model
    parts = []
    if depth is not None and camera is not None and result.without_3d is None:
        for detection, object_id in zip(result.detections, ids, strict=True):
            if detection.centre is not None:
                parts.append(_points_of(detection, object_id, depth, camera, frame.image_rgb, stride))
    if not parts:
        return ObjectPoints(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint32))
    points, rgb, labels = (np.concatenate(column) for column in zip(*parts, strict=True))
    return ObjectPoints(points, rgb, labels)


def _points_of(detection: Detection, object_id: int, depth, camera, image_rgb, stride: int):
    height, width = depth.shape
    left, top, right, bottom = (float(v) for v in detection.box)
    # the stride grid is the frame's (rows and columns divisible by stride), so neighbours never share a point
    rows = np.arange(-(-max(int(np.floor(top)), 0) // stride) * stride, min(int(np.ceil(bottom)), height), stride)
    cols = np.arange(-(-max(int(np.floor(left)), 0) // stride) * stride, min(int(np.ceil(right)), width), stride)
    grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
    z = depth[grid_rows, grid_cols]
    chosen = np.isfinite(z)
    if detection.mask is not None:
        chosen &= detection.mask[grid_rows, grid_cols]
    grid_rows, grid_cols, z = grid_rows[chosen], grid_cols[chosen], z[chosen]
    points = camera.back_project_pixels(grid_cols, grid_rows, z)
    rotation = _rotation(detection.orientation)
    local = (points - detection.centre) @ rotation  # coordinates along the box's axes
    half = np.asarray(detection.size) / 2 + MARGIN_M
    inside = np.all(np.abs(local) <= half, axis=1) & np.isfinite(points).all(axis=1)
    if not detection.axis_aligned_reason:  # an oriented box: its z axis is the support normal
        inside &= local[:, 2] > -detection.size[2] / 2 + MIN_HEIGHT_M
    count = int(np.count_nonzero(inside))
    return (
        points[inside].astype(np.float32),
        image_rgb[grid_rows[inside], grid_cols[inside]],
        np.full(count, object_id, np.uint32),
    )


def _rotation(quaternion_xyzw) -> np.ndarray:
    """The rotation matrix (columns: the box's axes in the optical frame) of a unit quaternion (x, y, z, w)."""
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )

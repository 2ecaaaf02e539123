"""An oriented 3D box for a part lying on a support surface, from its 3D points and the surface's.

The box's z axis is the support plane's normal (fitted to depth points around the part), its x and y
axes those of the minimum-area rectangle (OpenCV's `minAreaRect`) of the part's points projected on
the plane, x along the longer side; its bottom lies on the plane, so the size is the whole part, not
the face one view sees. Where the points cannot support an orientation (too few, a plane that does
not fit, a round footprint whose yaw is undefined) there is no box and a reason, so the caller
keeps its axis-aligned box: never a guessed angle. Points and results are metres in the camera
optical frame (x right, y down, z forward); quaternions are (x, y, z, w) as geometry_msgs orders them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.object_lifting import fast_median

MIN_PART_POINTS = 30
MAX_POINTS = 1000  # depth points of a part (and of its ring) the fit looks at
MIN_SUPPORT_POINTS = 30
MIN_ASPECT = 1.2  # footprints closer to square than this are checked for roundness
MIN_SQUARE_FILL = 0.9  # a near-square footprint filling less of its rectangle is round (a disc: 79 %)
MIN_HEIGHT_M = 0.004  # part points stand at least this far above the plane (depth noise, flying pixels)
MAX_PLANE_RMS_M = 0.01  # support points farther than this from their plane are no plane


@dataclass(frozen=True)
class OrientedBox:
    """Centre (3,) and size (3,) metres; rotation (3, 3) columns are the box's x, y, z axes."""

    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray

    @property
    def quaternion_xyzw(self) -> tuple[float, float, float, float]:
        return rotation_to_quaternion(self.rotation)


def region_and_ring(mask: np.ndarray, gap_px: int = 3, width_px: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) bool (part region, surface ring) of a detection mask.

    The ring is the pixels `gap_px` to `gap_px + width_px` outside the mask, where the support surface
    shows (the gap skips the flying pixels at the part's edge); the region is the mask with the ring,
    so a coarse patch-grid mask that falls short of the part still yields all of its points (those
    above the surface).
    """
    mask = mask.astype(np.uint8)
    # square kernels: OpenCV dilates with them in two 1D passes (an ellipse costs 10x more here)
    near = cv2.dilate(mask, np.ones((2 * gap_px + 1,) * 2, np.uint8))
    region = cv2.dilate(mask, np.ones((2 * (gap_px + width_px) + 1,) * 2, np.uint8)) > 0
    return region, region & (near == 0)


def fit_from_depth(
    depth_m: np.ndarray, camera: PinholeCameraModel, mask: np.ndarray | None, box: np.ndarray, reach_px: int = 15
) -> OrientedBox | str:
    """`fit_oriented_box` for one detection: its mask (H, W) bool (None: the box) and box (4,) xyxy
    camera pixels on a depth image (H, W) metres (NaN: no return), back-projected with `camera`;
    works on the box's crop grown by `reach_px`, so its cost does not grow with the frame."""
    height, width = depth_m.shape
    x1, y1 = (max(0, int(np.floor(v)) - reach_px) for v in box[:2])
    x2, y2 = (min(limit, int(np.ceil(v)) + reach_px) for v, limit in zip(box[2:], (width, height), strict=True))
    crop = depth_m[y1:y2, x1:x2]
    if mask is None:
        mask = np.zeros(depth_m.shape, bool)
        mask[int(box[1]) : int(np.ceil(box[3])), int(box[0]) : int(np.ceil(box[2]))] = True
    crop_mask = mask[y1:y2, x1:x2]
    region, ring = region_and_ring(crop_mask, gap_px=3, width_px=reach_px - 3)
    valid = np.isfinite(crop)

    def points(pixels: np.ndarray) -> np.ndarray:
        rows, cols = np.nonzero(pixels & valid)
        step = -(-len(rows) // MAX_POINTS)  # an even subsample: the same fit, bounded cost
        rows, cols = rows[::step], cols[::step]
        return camera.back_project(np.column_stack([cols + x1, rows + y1]), crop[rows, cols])

    return fit_oriented_box(points(region), points(ring))


def fit_plane(points: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray, float]:
    """(unit normal facing the camera, a point on the plane, RMS residual m) of points (N, 3).

    Least trimmed squares: fitted by SVD to the 60 % of points nearest the previous plane, then to
    those within 3 MADs; so up to ~40 % non-plane points (the part itself where its mask falls short,
    a neighbour, flying pixels) do not tilt the plane.
    """
    kept = points
    for iteration in range(iterations):
        centroid = kept.mean(axis=0)
        centred = kept - centroid
        normal = np.linalg.eigh(centred.T @ centred)[1][:, 0]  # the least-spread direction
        residual = np.abs((points - centroid) @ normal)
        if iteration < iterations - 1:
            kept = points[
                residual <= np.partition(residual, int(0.6 * (len(residual) - 1)))[int(0.6 * (len(residual) - 1))]
            ]
        else:
            kept = points[residual <= max(3 * 1.4826 * fast_median(residual), 1e-4)]
    centroid = kept.mean(axis=0)
    if normal @ centroid > 0:  # the camera sits at the origin: the normal points back at it
        normal = -normal
    rms = float(np.sqrt(np.mean(((kept - centroid) @ normal) ** 2)))
    return normal, centroid, rms


def fit_oriented_box(part_points: np.ndarray, support_points: np.ndarray) -> OrientedBox | str:
    """The part's oriented box, or a reason why its points give no orientation.

    `part_points` (N, 3): depth points of the part's region (its mask, or the mask grown by the ring
    where masks are coarse: points within MIN_HEIGHT_M of the plane are dropped as table);
    `support_points` (M, 3): depth points of the surface around it (`surface_ring`, or the table).
    """
    if len(part_points) < MIN_PART_POINTS:
        return f"only {len(part_points)} part points (need {MIN_PART_POINTS})"
    if len(support_points) < MIN_SUPPORT_POINTS:
        return f"only {len(support_points)} points of the surface around the part (need {MIN_SUPPORT_POINTS})"
    normal, origin, rms = fit_plane(np.asarray(support_points, np.float64))
    if rms > MAX_PLANE_RMS_M:
        return f"the surface around the part is no plane (RMS {1000 * rms:.1f} mm)"
    points = np.asarray(part_points, np.float64)
    heights = (points - origin) @ normal
    points = points[heights > MIN_HEIGHT_M]  # above the table: drop pixels that are table
    if len(points) < MIN_PART_POINTS:
        return f"only {len(points)} part points stand above the surface (need {MIN_PART_POINTS})"
    axis_a = _cross(normal, np.array([0.0, 1.0, 0.0] if abs(normal[1]) < 0.9 else [1.0, 0.0, 0.0]))
    axis_a /= np.linalg.norm(axis_a)
    axis_b = _cross(normal, axis_a)
    in_plane = np.column_stack([points @ axis_a, points @ axis_b]).astype(np.float32)
    rect = cv2.minAreaRect(in_plane)
    corners = cv2.boxPoints(rect).astype(np.float64)
    edges = corners[1] - corners[0], corners[2] - corners[1]
    long_edge, short_edge = sorted(edges, key=np.linalg.norm, reverse=True)
    long_side, short_side = float(np.linalg.norm(long_edge)), float(np.linalg.norm(short_edge))
    if short_side <= 1e-6:
        return "the part's points are a line on the surface"
    if long_side / short_side < MIN_ASPECT:
        # a square keeps its yaw (modulo 90 degrees); a round footprint has none
        fill = cv2.contourArea(cv2.convexHull(in_plane)) / (long_side * short_side)
        if fill < MIN_SQUARE_FILL:
            return f"round footprint (aspect {long_side / short_side:.2f}, fills {fill:.0%} of its rectangle): no yaw"
    x_axis = (long_edge[0] * axis_a + long_edge[1] * axis_b) / long_side
    rotation = np.column_stack([x_axis, _cross(normal, x_axis), normal])
    height = float(np.percentile((points - origin) @ normal, 98))
    (ca, cb) = rect[0]
    base = origin + (ca - origin @ axis_a) * axis_a + (cb - origin @ axis_b) * axis_b
    return OrientedBox(base + 0.5 * height * normal, rotation, np.array([long_side, short_side, height]))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b of two 3-vectors (np.cross costs more in argument handling than in arithmetic here)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def box_iou_3d(a: OrientedBox, b: OrientedBox, samples: int = 200_000, seed: int = 0) -> float:
    """Volume IoU of two oriented boxes, estimated from `samples` uniform points over both boxes' bounds
    (evaluation only: about 1 % standard error at 200k samples for boxes of similar size)."""
    corners = np.concatenate([_corners(a), _corners(b)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    points = np.random.default_rng(seed).uniform(low, high, (samples, 3))
    inside_a, inside_b = _contains(a, points), _contains(b, points)
    union = np.count_nonzero(inside_a | inside_b)
    return float(np.count_nonzero(inside_a & inside_b) / union) if union else 0.0


def _corners(box: OrientedBox) -> np.ndarray:
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    return box.center + (signs * box.size / 2) @ box.rotation.T


def _contains(box: OrientedBox, points: np.ndarray) -> np.ndarray:
    return np.all(np.abs((points - box.center) @ box.rotation) <= box.size / 2, axis=1)


def rotation_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) unit quaternion of a proper rotation matrix, w >= 0 (Shepperd's method)."""
    m = np.asarray(rotation, np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i], q[j], q[k] = 0.25 * s, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    q = np.array(q) * (1 if q[3] >= 0 else -1)
    return tuple(float(v) for v in q / np.linalg.norm(q))

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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel

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
    mask = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)  # a view: no copy of a crop
    # square kernels: OpenCV dilates with them in two 1D passes (an ellipse costs 10x more here)
    near = cv2.dilate(mask, np.ones((2 * gap_px + 1,) * 2, np.uint8))
    region = cv2.dilate(mask, np.ones((2 * (gap_px + width_px) + 1,) * 2, np.uint8)) > 0
    return region, region & (near == 0)


def fit_from_depth(
    depth_m: np.ndarray, camera: PinholeCameraModel, mask: np.ndarray | None, box: np.ndarray, reach_px: int = 15
) -> OrientedBox | str:
    """`fit_from_depths` for one detection."""
    return fit_from_depths(depth_m, camera, [mask], np.asarray(box, np.float64).reshape(1, 4), reach_px)[0]


def fit_from_depths(
    depth_m: np.ndarray,
    camera: PinholeCameraModel,
    masks: Sequence[np.ndarray | None],
    boxes: np.ndarray,
    reach_px: int = 15,
) -> list[OrientedBox | str]:
    """`fit_oriented_box` for each detection of a frame: masks (H, W) bool (None: the box) and boxes
    (K, 4) xyxy camera pixels on a depth image (H, W) metres (NaN: no return), back-projected with
    `camera`. Each works on its box's crop grown by `reach_px`, so the cost does not grow with the
    frame; the points of all detections are back-projected at once and their planes fitted at once."""
    height, width = depth_m.shape
    columns, rows_of, depths, counts = [], [], [], []
    for mask, box in zip(masks, boxes, strict=True):
        x1, y1 = (max(0, int(np.floor(v)) - reach_px) for v in box[:2])
        x2, y2 = (min(limit, int(np.ceil(v)) + reach_px) for v, limit in zip(box[2:], (width, height), strict=True))
        crop = depth_m[y1:y2, x1:x2]
        if mask is None:
            crop_mask = np.zeros(crop.shape, bool)
            crop_mask[
                max(0, int(box[1]) - y1) : int(np.ceil(box[3])) - y1,
                max(0, int(box[0]) - x1) : int(np.ceil(box[2])) - x1,
            ] = True
        else:
            crop_mask = mask[y1:y2, x1:x2]
        region, ring = region_and_ring(crop_mask, gap_px=3, width_px=reach_px - 3)
        valid = np.isfinite(crop)
        if camera.has_distortion:  # pixels where the lens model has no inverse give no points
            valid &= np.isfinite(camera.normalized_pixel_grid()[0, y1:y2, x1:x2])
        for pixels in (region & valid, ring & valid):
            flat = np.flatnonzero(pixels)  # (a fifth of np.nonzero's time on a 2D array)
            step = max(1, -(-len(flat) // MAX_POINTS))  # an even subsample: the same fit, bounded cost
            rows, cols = np.divmod(flat[::step], pixels.shape[1])
            columns.append(cols + x1)
            rows_of.append(rows + y1)
            depths.append(crop[rows, cols])
            counts.append(len(rows))
    if not counts:
        return []
    points = camera.back_project_pixels(np.concatenate(columns), np.concatenate(rows_of), np.concatenate(depths))
    sets = np.split(points, np.cumsum(counts)[:-1])
    return fit_oriented_boxes(sets[0::2], sets[1::2])


def fit_plane(points: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray, float]:
    """`fit_planes` for one set of points (N, 3): (normal (3,), point (3,), RMS m)."""
    normals, centroids, rms = fit_planes([points], iterations)
    return normals[0], centroids[0], float(rms[0])


def fit_planes(point_sets: Sequence[np.ndarray], iterations: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit normals facing the camera (K, 3), a point on each plane (K, 3), RMS residuals (K,) m)
    of K sets of points (N_k, 3), N_k >= 2, all fitted at once (padded to the largest set).

    Least trimmed squares: fitted by SVD to the 60 % of points nearest the previous plane, then to
    those within 3 MADs; so up to ~40 % non-plane points (the part itself where its mask falls short,
    a neighbour, flying pixels) do not tilt the plane.
    """
    counts = np.array([len(p) for p in point_sets])
    coords = np.zeros((len(point_sets), 3, counts.max()))  # (K, 3, N): each coordinate contiguous
    for k, p in enumerate(point_sets):
        coords[k, :, : len(p)] = np.asarray(p).T
    valid = np.arange(coords.shape[2]) < counts[:, None]
    rows = np.arange(len(counts))
    kept = valid
    for iteration in range(iterations + 1):
        weights = kept.astype(np.float64)
        centroid = (coords @ weights[:, :, None])[:, :, 0] / weights.sum(axis=1)[:, None]
        centred = coords - centroid[:, :, None]
        if iteration == iterations:
            break
        covariance = (centred * weights[:, None, :]) @ centred.transpose(0, 2, 1)
        normal = np.linalg.eigh(covariance)[1][:, :, 0]  # the least-spread direction
        residual = np.abs((normal[:, None, :] @ centred)[:, 0])
        ordered = np.sort(np.where(valid, residual, np.inf), axis=1)  # each set's own points first
        if iteration < iterations - 1:
            limit = ordered[rows, (0.6 * (counts - 1)).astype(int)]
        else:
            half = counts // 2
            median = np.where(counts % 2, ordered[rows, half], 0.5 * (ordered[rows, half - 1] + ordered[rows, half]))
            limit = np.maximum(3 * 1.4826 * median, 1e-4)
        kept = valid & (residual <= limit[:, None])
    facing = np.einsum("ki,ki->k", normal, centroid) > 0  # the camera sits at the origin: normals point back at it
    normal[facing] *= -1
    heights = (normal[:, None, :] @ centred)[:, 0]
    rms = np.sqrt((heights**2 * weights).sum(axis=1) / weights.sum(axis=1))
    return normal, centroid, rms


def fit_oriented_box(part_points: np.ndarray, support_points: np.ndarray) -> OrientedBox | str:
    """`fit_oriented_boxes` for one part."""
    return fit_oriented_boxes([part_points], [support_points])[0]


def fit_oriented_boxes(
    part_points: Sequence[np.ndarray], support_points: Sequence[np.ndarray]
) -> list[OrientedBox | str]:
    """Each part's oriented box, or a reason why its points give no orientation.

    `part_points[k]` (N, 3): depth points of the part's region (its mask, or the mask grown by the ring
    where masks are coarse: points within MIN_HEIGHT_M of the plane are dropped as table);
    `support_points[k]` (M, 3): depth points of the surface around it (`surface_ring`, or the table).
    """
    results: list[OrientedBox | str] = []
    for part, support in zip(part_points, support_points, strict=True):
        if len(part) < MIN_PART_POINTS:
            results.append(f"only {len(part)} part points (need {MIN_PART_POINTS})")
        elif len(support) < MIN_SUPPORT_POINTS:
            results.append(f"only {len(support)} points of the surface around the part (need {MIN_SUPPORT_POINTS})")
        else:
            results.append("")
    fitted = [k for k, reason in enumerate(results) if not reason]
    if not fitted:
        return results
    normals, origins, rms = fit_planes([np.asarray(support_points[k], np.float64) for k in fitted])
    for k, normal, origin, plane_rms in zip(fitted, normals, origins, rms, strict=True):
        if plane_rms > MAX_PLANE_RMS_M:
            results[k] = f"the surface around the part is no plane (RMS {1000 * plane_rms:.1f} mm)"
        else:
            results[k] = _box_on_plane(np.asarray(part_points[k], np.float64), normal, origin)
    return results


def _box_on_plane(points: np.ndarray, normal: np.ndarray, origin: np.ndarray) -> OrientedBox | str:
    """The box of a part's points (N, 3) standing on the plane through `origin` with unit `normal`.

    The point sets go through NumPy and OpenCV; the 3-vector algebra runs on Python floats, where
    NumPy's per-call cost would be most of the time.
    """
    heights = (points - origin) @ normal
    above = heights > MIN_HEIGHT_M  # above the table: drop pixels that are table
    points, heights = points[above], heights[above]
    if len(points) < MIN_PART_POINTS:
        return f"only {len(points)} part points stand above the surface (need {MIN_PART_POINTS})"
    n, o = normal.tolist(), origin.tolist()
    axis_a = _cross(n, [0.0, 1.0, 0.0] if abs(n[1]) < 0.9 else [1.0, 0.0, 0.0])
    length = math.sqrt(_dot(axis_a, axis_a))
    axis_a = [v / length for v in axis_a]
    axis_b = _cross(n, axis_a)
    in_plane = (points @ np.array([axis_a, axis_b]).T).astype(np.float32)
    rect = cv2.minAreaRect(in_plane)
    (x0, y0), (x1, y1), (x2, y2), _ = cv2.boxPoints(rect).astype(np.float64).tolist()
    edges = [x1 - x0, y1 - y0], [x2 - x1, y2 - y1]
    sides = [math.hypot(*edge) for edge in edges]
    longer = int(sides[1] > sides[0])
    long_edge, long_side, short_side = edges[longer], sides[longer], sides[1 - longer]
    if short_side <= 1e-6:
        return "the part's points are a line on the surface"
    if long_side / short_side < MIN_ASPECT:
        # a square keeps its yaw (modulo 90 degrees); a round footprint has none
        fill = cv2.contourArea(cv2.convexHull(in_plane)) / (long_side * short_side)
        if fill < MIN_SQUARE_FILL:
            return f"round footprint (aspect {long_side / short_side:.2f}, fills {fill:.0%} of its rectangle): no yaw"
    x_axis = [(long_edge[0] * a + long_edge[1] * b) / long_side for a, b in zip(axis_a, axis_b, strict=True)]
    rotation = np.array([x_axis, _cross(n, x_axis), n]).T
    height = _percentile(heights, 98.0)
    (ca, cb) = rect[0]
    along_a, along_b = ca - _dot(o, axis_a), cb - _dot(o, axis_b)
    center = [p + along_a * a + along_b * b + 0.5 * height * z for p, a, b, z in zip(o, axis_a, axis_b, n, strict=True)]
    return OrientedBox(np.array(center), rotation, np.array([long_side, short_side, height]))


def _percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) of a 1D array (its default linear interpolation) by one partition."""
    position = q / 100 * (len(values) - 1)
    below = int(position)
    above = min(below + 1, len(values) - 1)
    low, high = np.partition(values, (below, above))[[below, above]]
    return float(low + (high - low) * (position - below))


def _cross(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a x b of two 3-vectors as Python floats (np.cross costs more in argument handling than in
    arithmetic here)."""
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


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
    """(x, y, z, w) unit quaternion of a proper rotation matrix, w >= 0 (Shepperd's method).

    On Python floats: for one 3x3 matrix NumPy's per-call cost is most of the time.
    """
    m = np.asarray(rotation, np.float64).tolist()
    trace = m[0][0] + m[1][1] + m[2][2]
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = [(m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s, 0.25 * s]
    else:
        diagonal = [m[0][0], m[1][1], m[2][2]]
        i = diagonal.index(max(diagonal))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i][i] - m[j][j] - m[k][k])
        q = [0.0, 0.0, 0.0, (m[k][j] - m[j][k]) / s]
        q[i], q[j], q[k] = 0.25 * s, (m[j][i] + m[i][j]) / s, (m[k][i] + m[i][k]) / s
    sign = 1.0 if q[3] >= 0 else -1.0
    norm = math.sqrt(sum(v * v for v in q))
    return tuple(sign * v / norm for v in q)

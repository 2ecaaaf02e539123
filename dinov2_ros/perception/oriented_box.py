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
from itertools import pairwise

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
    mask = (mask if mask.dtype == bool else mask != 0).view(np.uint8)  # a view: no copy of a crop
    # a square dilation is a box sum above zero: OpenCV's running sums cost the same for any size
    # (half of `dilate` at the ring's 31 px); the zero border leaves out what lies beyond the image
    near = cv2.boxFilter(mask, cv2.CV_16U, (2 * gap_px + 1,) * 2, normalize=False, borderType=cv2.BORDER_CONSTANT)
    reach = 2 * (gap_px + width_px) + 1
    region = cv2.boxFilter(mask, cv2.CV_16U, (reach, reach), normalize=False, borderType=cv2.BORDER_CONSTANT) > 0
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
    frame. The crops are stacked into one canvas, `reach_px` rows apart so that no dilation reaches
    from one into the next: the rings, the valid pixels and the point selection are one NumPy/OpenCV
    call per frame instead of per detection, and the planes are fitted at once."""
    if len(boxes) == 0:
        return []
    height, width = depth_m.shape
    corners = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1 = np.maximum(np.floor(corners[:, 0]).astype(int) - reach_px, 0)
    y1 = np.maximum(np.floor(corners[:, 1]).astype(int) - reach_px, 0)
    x2 = np.minimum(np.ceil(corners[:, 2]).astype(int) + reach_px, width)
    y2 = np.minimum(np.ceil(corners[:, 3]).astype(int) + reach_px, height)
    heights, widths = np.maximum(y2 - y1, 0), np.maximum(x2 - x1, 0)
    tops = np.concatenate([[0], np.cumsum(heights + reach_px)[:-1]])  # each crop's first canvas row
    shape = (int(tops[-1] + heights[-1]), int(max(widths.max(), 1)))
    crops, regions = np.full(shape, np.nan, depth_m.dtype), np.zeros(shape, np.uint8)
    rays = camera.normalized_pixel_grid()[0] if camera.has_distortion else None  # x/z of each pixel
    for k, (mask, box) in enumerate(zip(masks, corners, strict=True)):
        rows, cols = slice(y1[k], y2[k]), slice(x1[k], x2[k])
        into = (slice(tops[k], tops[k] + heights[k]), slice(0, widths[k]))
        crops[into] = depth_m[rows, cols]
        if rays is not None:  # pixels where the lens model has no inverse give no points
            crops[into][~np.isfinite(rays[rows, cols])] = np.nan
        if mask is None:  # the box itself, within its window
            top, bottom = (min(max(v - y1[k], 0), heights[k]) for v in (int(box[1]), math.ceil(box[3])))
            left, right = (min(max(v - x1[k], 0), widths[k]) for v in (int(box[0]), math.ceil(box[2])))
            regions[tops[k] + top : tops[k] + bottom, left:right] = 1
        else:
            regions[into] = mask[rows, cols]
    region, ring = region_and_ring(regions, gap_px=3, width_px=reach_px - 3)
    valid = np.isfinite(crops)
    point_sets = []
    crop_starts = tops * shape[1]  # each crop's first flat canvas index
    for pixels in (region & valid, ring & valid):
        flat = np.flatnonzero(pixels)  # (a fifth of np.nonzero's time on a 2D array)
        bounds = np.searchsorted(flat, np.append(crop_starts, pixels.size)).tolist()  # each crop's share
        # an even subsample of each crop's pixels: the same fit, bounded cost
        chosen = [flat[start : end : max(1, -(-(end - start) // MAX_POINTS))] for start, end in pairwise(bounds)]
        counts = [len(c) for c in chosen]
        flat, owner = np.concatenate(chosen), np.repeat(np.arange(len(chosen)), counts)
        rows, cols = np.divmod(flat, shape[1])
        points = camera.back_project_pixels(cols + x1[owner], rows - tops[owner] + y1[owner], crops.ravel()[flat])
        point_sets.append(np.split(points, np.cumsum(counts)[:-1]))
    return fit_oriented_boxes(*point_sets)


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
        # each set's own points first, then its order statistics by one partition of all sets
        if iteration < iterations - 1:
            rank = (0.6 * (counts - 1)).astype(int)
            limit = np.partition(np.where(valid, residual, np.inf), np.unique(rank), axis=1)[rows, rank]
        else:
            half = counts // 2
            ordered = np.partition(np.where(valid, residual, np.inf), np.unique([half - 1, half]), axis=1)
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

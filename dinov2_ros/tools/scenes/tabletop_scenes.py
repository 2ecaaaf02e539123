"""Cuboid parts on a tilted table, ray-cast: exact ground truth for oriented 3D boxes.

The flat scenes of synthetic_scenes.py put every part face-on to the camera, so they cannot test
how a part lies. Here the table is a plane at `distance` metres along the optical axis, tilted toward
the camera by `tilt_deg` about the optical frame's x axis; each part is a cuboid standing on it,
rotated about the table normal by a known yaw. Depth is the exact ray-cast z (REP 118 metres) with
optional noise; masks are the pixels whose nearest hit is the part. Frames follow REP 103/104: the
camera optical frame has x right, y down, z forward. A `Conveyor` moves parts across the view at a
known speed; `conveyor_sequence` films it with occasional missed frames, for tracking ground truth.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# footprint (length, width) and height in metres of each part class; aspect = length / width
TABLETOP_PARTS: dict[str, tuple[float, float, float]] = {
    "bar": (0.12, 0.04, 0.03),  # aspect 3
    "plate": (0.10, 0.05, 0.015),  # aspect 2
    "brick": (0.09, 0.06, 0.04),  # aspect 1.5
    "cube": (0.06, 0.06, 0.06),  # aspect 1: no yaw to find
}
_COLOURS = {"bar": (200, 60, 40), "plate": (40, 160, 200), "brick": (210, 180, 40), "cube": (90, 200, 90)}


@dataclass(frozen=True)
class TabletopPart:
    """One cuboid: class name, centre (3,) metres and rotation (3, 3) whose columns are its x (length),
    y (width) and z (height, the table normal) axes in the optical frame, and size (3,) metres."""

    name: str
    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray


@dataclass(frozen=True)
class TabletopScene:
    image_rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres as a depth camera gives it: noise, NaN where no return
    masks: np.ndarray  # (N, H, W) bool, visible pixels of each part
    parts: tuple[TabletopPart, ...]
    table_normal: np.ndarray  # (3,) unit, pointing from the table toward the camera
    K: np.ndarray  # (3, 3)
    true_depth: np.ndarray  # (H, W) float32 metres, the exact ray-cast depth: no noise, no holes
    no_return: tuple[int, ...] = ()  # indices of the parts that return no depth (NaN in `depth`)


def table_normal(tilt_deg: float) -> np.ndarray:
    """Unit normal of a table tilted by `tilt_deg` about the optical x axis, facing the camera."""
    t = np.radians(tilt_deg)
    return np.array([0.0, np.sin(t), -np.cos(t)])


def render_tabletop(
    parts: list[tuple[str, float, float, float]],
    tilt_deg: float = 0.0,
    distance: float = 0.8,
    width: int = 640,
    height: int = 480,
    depth_noise_m: float = 0.0,
    seed: int = 0,
    no_return: tuple[int, ...] = (),
) -> TabletopScene:
    """Render `parts`, each (class name, a, b, yaw_deg) or (class name, a, b, yaw_deg, support): its
    footprint centre at a, b metres along the table's in-plane axes from the point where the optical
    axis meets the table, turned by yaw, standing on the table or, with `support` (the index of an
    earlier part), lying flat on that part's top face (stacked; it may overhang). The
    parts of index `no_return` give the depth camera no return (shiny metal, black plastic,
    transparent film): their visible pixels are NaN in `depth`, as a structured-light or
    time-of-flight camera gives them; `true_depth` has them."""
    K, rays, table_depth, shade = _camera(width, height, tilt_deg, distance)
    normal = table_normal(tilt_deg)
    origin = np.array([0.0, 0.0, distance])
    axis_a = np.array([1.0, 0.0, 0.0])  # x is in the plane: the tilt is about it
    axis_b = np.cross(normal, axis_a)
    depth = table_depth.copy()
    owner = np.full((height, width), -1)
    built = []
    for index, (name, a, b, yaw_deg, *support) in enumerate(parts):
        length, breadth, tall = TABLETOP_PARTS[name]
        yaw = np.radians(yaw_deg)
        x_axis = np.cos(yaw) * axis_a + np.sin(yaw) * axis_b
        rotation = np.column_stack([x_axis, np.cross(normal, x_axis), normal])
        below = built[support[0]] if support and support[0] is not None else None
        lift = 0.0 if below is None else float((below.center - origin) @ normal + below.size[2] / 2)
        center = origin + a * axis_a + b * axis_b + (lift + 0.5 * tall) * normal
        size = np.array([length, breadth, tall])
        built.append(TabletopPart(name, center, rotation, size))
        rows, cols = _projected_window(center, rotation, size, K, width, height)
        hit = _ray_box_depth(rays[rows, cols], center, rotation, size)
        window_depth, window_owner = depth[rows, cols], owner[rows, cols]  # views
        nearer = hit < window_depth
        window_depth[nearer], window_owner[nearer] = hit[nearer], index
    masks = np.stack([owner == i for i in range(len(parts))]) if parts else np.zeros((0, height, width), bool)
    rng = np.random.default_rng(seed)
    palette = np.array([_COLOURS[part.name] for part in built] + [(150, 140, 130)], np.float32)  # owner -1: table
    image = palette[owner] * shade[..., None] + 4 * rng.standard_normal((height, width, 3), np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    true_depth = depth.astype(np.float32)
    depth = true_depth.copy()
    if depth_noise_m:
        depth += rng.normal(0, depth_noise_m, depth.shape).astype(np.float32)
    for index in no_return:
        depth[masks[index]] = np.nan
    return TabletopScene(image, depth, masks, tuple(built), normal, K, true_depth, tuple(no_return))


@functools.lru_cache(maxsize=4)
def _camera(width: int, height: int, tilt_deg: float, distance: float):
    """K, the pixels' rays (z = 1), the bare table's depth and its shading, shared by a sequence's frames
    (read-only arrays)."""
    focal = 0.8 * width
    K = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
    normal = table_normal(tilt_deg)
    v, u = np.mgrid[0:height, 0:width]
    rays = np.stack([(u - K[0, 2]) / focal, (v - K[1, 2]) / focal, np.ones_like(u, float)], axis=-1)
    depth = (np.array([0.0, 0.0, distance]) @ normal) / (rays @ normal)  # z of the table hit (rays have z = 1)
    shade = np.clip(0.6 + 0.4 * -(rays / np.linalg.norm(rays, axis=-1, keepdims=True)) @ normal, 0, 1)
    for array in (K, rays, depth, shade):
        array.flags.writeable = False
    return K, rays, depth, shade.astype(np.float32)


def _projected_window(
    center: np.ndarray, rotation: np.ndarray, size: np.ndarray, K: np.ndarray, width: int, height: int
) -> tuple[slice, slice]:
    """Rows and columns of the image rectangle holding the box's projection (all corners lie in front
    of the camera here), so that only its rays are cast: the whole frame's cost 20x less."""
    signs = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    corners = center + (signs * size) @ rotation.T
    pixels = corners[:, :2] / corners[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
    (u1, v1), (u2, v2) = np.floor(pixels.min(axis=0)) - 1, np.ceil(pixels.max(axis=0)) + 2
    return slice(int(np.clip(v1, 0, height)), int(np.clip(v2, 0, height))), slice(
        int(np.clip(u1, 0, width)), int(np.clip(u2, 0, width))
    )


def _ray_box_depth(rays: np.ndarray, center: np.ndarray, rotation: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Depth (z) where each ray (…, 3) from the origin enters the oriented box; inf where it misses."""
    local_origin = -center @ rotation  # camera origin in the box frame
    local_dirs = rays @ rotation
    half = size / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - local_origin) / local_dirs
        t2 = (half - local_origin) / local_dirs
    near = np.nanmax(np.minimum(t1, t2), axis=-1)
    far = np.nanmin(np.maximum(t1, t2), axis=-1)
    return np.where((near <= far) & (near > 0), near, np.inf)  # rays have z = 1: t is the depth


@dataclass(frozen=True)
class ConveyorFrame:
    """One delivered frame of a conveyor sequence: its stamp (s), the scene, and each part's track id
    (in scene.parts order; ids are never reused)."""

    stamp_s: float
    scene: TabletopScene
    track_ids: tuple[int, ...]


@dataclass(frozen=True)
class Conveyor:
    """Parts enter on the left of the table every `spawn_every_s`, move along its x axis at `speed_m_s`
    and leave on the right; part n (its track id, from 1) has a class, lane and yaw drawn from (seed, n),
    so any moment renders the same without replaying the ones before (a live camera, a sequence). A
    `shiny_fraction` of the parts, drawn the same way, return no depth (TabletopScene.no_return)."""

    speed_m_s: float = 0.05
    spawn_every_s: float = 1.5
    tilt_deg: float = 15.0
    seed: int = 0
    enter_m: float = -0.3
    leave_m: float = 0.3
    shiny_fraction: float = 0.0

    def part(self, track_id: int) -> tuple[str, float, float]:
        """(class name, lane (m), yaw (deg)) of part `track_id`."""
        rng = np.random.default_rng((self.seed, track_id))
        names = tuple(TABLETOP_PARTS)
        return names[rng.integers(len(names))], rng.uniform(-0.1, 0.1), rng.uniform(-90, 90)

    def render(self, t: float, **render_options) -> ConveyorFrame:
        """The conveyor at `t` seconds from the start; `render_options` go to render_tabletop."""
        crossing_s = (self.leave_m - self.enter_m) / self.speed_m_s
        first = max(0, int(np.ceil((t - crossing_s) / self.spawn_every_s - 1e-9)))
        ids, layout, shiny = [], [], []
        for n in range(first, int(np.floor(t / self.spawn_every_s + 1e-9)) + 1):
            name, lane, yaw = self.part(n + 1)
            if np.random.default_rng((self.seed, n + 1, 1)).random() < self.shiny_fraction:
                shiny.append(len(layout))
            ids.append(n + 1)
            layout.append((name, self.enter_m + self.speed_m_s * (t - n * self.spawn_every_s), lane, yaw))
        seed = self.seed * 100_003 + round(t * 1000)
        scene = render_tabletop(layout, tilt_deg=self.tilt_deg, seed=seed, no_return=tuple(shiny), **render_options)
        return ConveyorFrame(t, scene, tuple(ids))


def conveyor_sequence(
    frames: int,
    rate_hz: float = 10.0,
    missed_fraction: float = 0.05,
    seed: int = 0,
    conveyor: Conveyor | None = None,
    **render_options,
) -> Iterator[ConveyorFrame]:
    """`frames` camera frames at `rate_hz` of `conveyor` (default Conveyor(seed=seed)); a random
    `missed_fraction` of them is not delivered (a dropped frame), so a tracker sees the gaps a real
    stream has."""
    conveyor = conveyor or Conveyor(seed=seed)
    rng = np.random.default_rng(seed)
    for index in range(frames):
        if rng.random() >= missed_fraction:
            yield conveyor.render(index / rate_hz, **render_options)


@dataclass(frozen=True)
class DetectorNoise:
    """What separates a detector from ground truth, per visible part and frame: box corners jittered by
    `jitter_px` (std, pixels), scores uniform in `scores`, a part missed with probability `miss`, and
    one false positive (a random box) per frame with probability `false_positive`."""

    jitter_px: float = 1.5
    scores: tuple[float, float] = (0.55, 0.95)
    miss: float = 0.05
    false_positive: float = 0.05


def visible_boxes(scene: TabletopScene, min_pixels: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(indices into scene.parts, (M, 4) xyxy pixel boxes) of the parts with at least `min_pixels`
    visible pixels: the ground truth a detector can be held to."""
    indices, boxes = [], []
    for index, mask in enumerate(scene.masks):
        rows, cols = np.nonzero(mask)
        if rows.size >= min_pixels:
            indices.append(index)
            boxes.append((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
    return np.array(indices, int), np.array(boxes, np.float32).reshape(-1, 4)


def noisy_detections(
    truth: np.ndarray, size: tuple[int, int], rng: np.random.Generator, noise: DetectorNoise = DetectorNoise()
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy boxes and (N,) scores a detector of `noise`'s quality would report for the true
    boxes `truth` (M, 4) (`visible_boxes`) in an image of `size` (height, width) pixels."""
    kept = truth[rng.random(len(truth)) >= noise.miss]
    boxes = kept + rng.normal(0.0, noise.jitter_px, kept.shape).astype(np.float32)
    height, width = size
    if rng.random() < noise.false_positive:
        x, y = rng.uniform(0, width - 30), rng.uniform(0, height - 30)
        boxes = np.vstack([boxes, [[x, y, x + rng.uniform(10, 30), y + rng.uniform(10, 30)]]]).astype(np.float32)
    scores = rng.uniform(*noise.scores, len(boxes)).astype(np.float32)
    return boxes, scores


def stand_in_model_depth(
    true_depth: np.ndarray, scale: float = 1.08, shift_m: float = 0.04, noise_m: float = 0.003, seed: int = 0
) -> np.ndarray:
    """A STAND-IN for a network's metric depth, for tests and evaluations where random weights predict
    none: the true depth with a known scale and offset error (sensor = `scale` * this + `shift_m`, as a
    monocular network's learned metric scale is off on a given scene) and `noise_m` of per-pixel noise.
    Sharper at part edges than a network's, so errors measured with it are a lower bound."""
    noise = np.random.default_rng(seed).normal(0.0, noise_m, true_depth.shape)
    return ((true_depth - shift_m) / scale + noise).astype(np.float32)


def parts_above(scene: TabletopScene) -> list[set[int]]:
    """For each part, the parts lying on or over it: their footprints overlap in the table plane and
    their bottom is at or above its top (the ground truth of what must be picked first)."""
    normal = scene.table_normal
    grid = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 11), np.linspace(-0.5, 0.5, 11)), -1).reshape(-1, 2)
    above: list[set[int]] = [set() for _ in scene.parts]
    for i, lower in enumerate(scene.parts):
        top = lower.center @ normal + lower.size[2] / 2
        for j, upper in enumerate(scene.parts):
            if j == i or upper.center @ normal - upper.size[2] / 2 < top - 1e-6:
                continue
            footprint = upper.center + (grid * upper.size[:2]) @ upper.rotation[:, :2].T  # points of its footprint
            local = (footprint - lower.center) @ lower.rotation[:, :2]
            if np.any(np.all(np.abs(local) <= lower.size[:2] / 2, axis=1)):
                above[i].add(j)
    return above


def stacked_parts(seed: int, base: int = 6, stacked: int = 4) -> list[tuple]:
    """A layout for `render_tabletop`: `base` parts standing on the table on a jittered grid, and
    `stacked` more each lying on a random earlier part, offset by up to 40 % of its length (overhanging,
    sometimes two levels high), all at random yaws; drawn from `seed`."""
    rng = np.random.default_rng(seed)
    names = tuple(TABLETOP_PARTS)
    slots = [(a, b) for b in (-0.09, 0.03, 0.15) for a in (-0.18, -0.04, 0.1, 0.22)]
    chosen = rng.choice(len(slots), base, replace=False)
    layout: list[tuple] = []
    for slot in chosen:
        a, b = slots[slot]
        layout.append(
            (
                names[rng.integers(len(names))],
                a + rng.uniform(-0.015, 0.015),
                b + rng.uniform(-0.015, 0.015),
                rng.uniform(-90, 90),
            )
        )
    for _ in range(stacked):
        support = int(rng.integers(len(layout)))
        _, a, b, _, *_ = layout[support]
        reach = 0.4 * TABLETOP_PARTS[layout[support][0]][0]
        layout.append(
            (
                names[rng.integers(len(names))],
                a + rng.uniform(-reach, reach),
                b + rng.uniform(-reach, reach),
                rng.uniform(-90, 90),
                support,
            )
        )
    return layout

"""Cuboid parts on a tilted table, ray-cast: exact ground truth for oriented 3D boxes.

The flat scenes of synthetic_scenes.py put every part face-on to the camera, so they cannot test
how a part lies. Here the table is a plane at `distance` metres along the optical axis, tilted toward
the camera by `tilt_deg` about the optical frame's x axis; each part is a cuboid standing on it,
rotated about the table normal by a known yaw. Depth is the exact ray-cast z (REP 118 metres) with
optional noise; masks are the pixels whose nearest hit is the part. Frames follow REP 103/104: the
camera optical frame has x right, y down, z forward. `conveyor_sequence` moves parts across the view
at a known speed, with occasional missed frames, for tracking ground truth.
"""

from __future__ import annotations

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
    depth: np.ndarray  # (H, W) float32 metres, NaN where nothing is hit
    masks: np.ndarray  # (N, H, W) bool, visible pixels of each part
    parts: tuple[TabletopPart, ...]
    table_normal: np.ndarray  # (3,) unit, pointing from the table toward the camera
    K: np.ndarray  # (3, 3)


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
) -> TabletopScene:
    """Render `parts`, each (class name, a, b, yaw_deg): its footprint centre at a, b metres along the
    table's in-plane axes from the point where the optical axis meets the table, turned by yaw."""
    focal = 0.8 * width
    K = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
    normal = table_normal(tilt_deg)
    origin = np.array([0.0, 0.0, distance])
    axis_a = np.array([1.0, 0.0, 0.0])  # x is in the plane: the tilt is about it
    axis_b = np.cross(normal, axis_a)
    v, u = np.mgrid[0:height, 0:width]
    rays = np.stack([(u - K[0, 2]) / focal, (v - K[1, 2]) / focal, np.ones_like(u, float)], axis=-1)
    depth = (origin @ normal) / (rays @ normal)  # z of the table hit (rays have z = 1)
    owner = np.full((height, width), -1)
    built = []
    for index, (name, a, b, yaw_deg) in enumerate(parts):
        length, breadth, tall = TABLETOP_PARTS[name]
        yaw = np.radians(yaw_deg)
        x_axis = np.cos(yaw) * axis_a + np.sin(yaw) * axis_b
        rotation = np.column_stack([x_axis, np.cross(normal, x_axis), normal])
        center = origin + a * axis_a + b * axis_b + 0.5 * tall * normal
        size = np.array([length, breadth, tall])
        built.append(TabletopPart(name, center, rotation, size))
        hit = _ray_box_depth(rays, center, rotation, size)
        nearer = hit < depth
        depth[nearer], owner[nearer] = hit[nearer], index
    masks = np.stack([owner == i for i in range(len(parts))]) if parts else np.zeros((0, height, width), bool)
    rng = np.random.default_rng(seed)
    shade = np.clip(0.6 + 0.4 * -(rays / np.linalg.norm(rays, axis=-1, keepdims=True)) @ normal, 0, 1)
    image = np.empty((height, width, 3))
    image[:] = (150, 140, 130)
    for part, mask in zip(built, masks, strict=True):
        image[mask] = _COLOURS[part.name]
    image = np.clip(image * shade[..., None] + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    depth = depth.astype(np.float32)
    if depth_noise_m:
        depth += rng.normal(0, depth_noise_m, depth.shape).astype(np.float32)
    return TabletopScene(image, depth, masks, tuple(built), normal, K)


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


def conveyor_sequence(
    frames: int,
    rate_hz: float = 10.0,
    speed_m_s: float = 0.05,
    spawn_every_s: float = 1.5,
    missed_fraction: float = 0.05,
    tilt_deg: float = 15.0,
    seed: int = 0,
    **render_options,
) -> Iterator[ConveyorFrame]:
    """Parts enter on the left of the table, move along its x axis at `speed_m_s`, and leave on the
    right; a random `missed_fraction` of the `frames` camera frames is not delivered (a dropped
    frame), so a tracker sees the gaps a real stream has. Each part has a random class, lane and yaw."""
    rng = np.random.default_rng(seed)
    names = tuple(TABLETOP_PARTS)
    enter, leave = -0.3, 0.3
    parts: list[tuple[int, str, float, float, float]] = []  # (track id, name, entry time, lane, yaw)
    next_id, next_spawn = 1, 0.0
    for index in range(frames):
        t = index / rate_hz
        while t >= next_spawn:
            parts.append(
                (next_id, names[rng.integers(len(names))], next_spawn, rng.uniform(-0.1, 0.1), rng.uniform(-90, 90))
            )
            next_id, next_spawn = next_id + 1, next_spawn + spawn_every_s
        parts = [p for p in parts if enter + speed_m_s * (t - p[2]) <= leave]
        if rng.random() < missed_fraction:
            continue
        layout = [(name, enter + speed_m_s * (t - entered), lane, yaw) for _, name, entered, lane, yaw in parts]
        scene = render_tabletop(layout, tilt_deg=tilt_deg, seed=seed * 100_003 + index, **render_options)
        yield ConveyorFrame(t, scene, tuple(track_id for track_id, *_ in parts))

"""Deterministic synthetic picking scenes with exact ground truth, for tests and the demo camera.

Flat-faced parts of a few classes lie on a textured table seen head-on by a pinhole camera. Every
scene is a pure function of (seed, index), so a test can name the scene it checks. Textures and
depth noise are drawn once per generator and cropped per scene, so a 640x480 scene takes a few ms.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# class name -> (shape, RGB colour, texture period in pixels); colours and textures differ so that
# even a randomly initialised encoder can tell the classes apart.
PART_CATALOG: dict[str, tuple[str, tuple[int, int, int], int]] = {
    "block": ("rectangle", (210, 60, 45), 6),
    "puck": ("disk", (50, 170, 70), 0),
    "wedge": ("triangle", (55, 85, 215), 8),
    "ring": ("ring", (230, 200, 40), 4),
}


@dataclass(frozen=True)
class Scene:
    """One rendered frame and its ground truth.

    `boxes` are xyxy pixel edges (x2, y2 exclusive); `centers_3d` and `sizes_3d` (metres, camera
    optical frame) describe each part's visible front face, which is what one depth view can measure.
    """

    image_rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, NaN where the sensor gives no return
    boxes: np.ndarray  # (N, 4) float32
    masks: np.ndarray  # (N, H, W) bool
    class_ids: np.ndarray  # (N,) int64, index into the generator's class_names
    K: np.ndarray  # (3, 3) float64 intrinsics
    centers_3d: np.ndarray  # (N, 3) float64
    sizes_3d: np.ndarray  # (N, 3) float64


class SyntheticSceneGenerator:
    """Renders scenes of parts from `classes` (names in PART_CATALOG) at `width` x `height`."""

    def __init__(
        self,
        seed: int,
        width: int = 640,
        height: int = 480,
        classes: Sequence[str] = tuple(PART_CATALOG),
        objects_per_scene: tuple[int, int] = (1, 4),
        object_size: tuple[float, float] = (0.16, 0.3),
        depth_noise: bool = True,
    ) -> None:
        unknown = [name for name in classes if name not in PART_CATALOG]
        if unknown or not classes:
            raise ValueError(f"unknown part classes {unknown or list(classes)}; choose from {sorted(PART_CATALOG)}")
        if width < 32 or height < 32:
            raise ValueError(f"scene size {width}x{height} is too small; use at least 32x32 pixels")
        if not 1 <= objects_per_scene[0] <= objects_per_scene[1]:
            raise ValueError(f"objects_per_scene must be (min, max) with 1 <= min <= max, got {objects_per_scene}")
        self.seed = seed
        self.width = width
        self.height = height
        self.class_names = tuple(classes)
        self.objects_per_scene = objects_per_scene
        self.object_size = object_size
        self.depth_noise = depth_noise
        focal = 0.8 * width
        self.K = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
        rng = np.random.default_rng((seed, 0xC0FFEE))
        self._background = _table_texture(rng, 2 * height, 2 * width)
        self._part_textures = [_part_texture(rng, name, height, width) for name in self.class_names]
        self._depth_noise = rng.standard_normal((2 * height, 2 * width)).astype(np.float32)
        self._depth_holes = rng.random((2 * height, 2 * width)) < 0.01

    def render(self, index: int) -> Scene:
        """Scene number `index`; the same (seed, index) always gives the same scene."""
        rng = np.random.default_rng((self.seed, index))
        height, width = self.height, self.width
        oy, ox = rng.integers(0, height), rng.integers(0, width)
        brightness = rng.uniform(0.8, 1.15)
        image = np.clip(self._background[oy : oy + height, ox : ox + width] * brightness, 0, 255)
        image = image.astype(np.uint8)
        table_z = float(rng.uniform(0.7, 1.2))
        depth = np.full((height, width), table_z, np.float32)

        boxes, masks, class_ids, centers, sizes = [], [], [], [], []
        occupied = np.zeros((height, width), bool)
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        for _ in range(int(rng.integers(self.objects_per_scene[0], self.objects_per_scene[1] + 1))):
            placed = self._place(rng, occupied)
            if placed is None:
                continue
            class_id, (x1, y1, x2, y2), crop_mask = placed
            face_z = table_z - float(rng.uniform(0.02, 0.08))
            mask = np.zeros((height, width), bool)
            mask[y1:y2, x1:x2] = crop_mask
            occupied[max(0, y1 - 2) : y2 + 2, max(0, x1 - 2) : x2 + 2] = True
            tex = self._part_textures[class_id]
            ty, tx = rng.integers(0, height - (y2 - y1) + 1), rng.integers(0, width - (x2 - x1) + 1)
            patch = tex[ty : ty + y2 - y1, tx : tx + x2 - x1] * rng.uniform(0.85, 1.15)
            image[y1:y2, x1:x2][crop_mask] = np.clip(patch[crop_mask], 0, 255).astype(np.uint8)
            # flying pixels: the sensor blends part and table depth on the ring just outside the part
            ring = cv2.dilate(np.pad(crop_mask, 1).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            ring &= ~np.pad(crop_mask, 1)
            ry1, rx1 = y1 - 1, x1 - 1
            region = depth[max(0, ry1) : y2 + 1, max(0, rx1) : x2 + 1]
            ring = ring[max(0, -ry1) :, max(0, -rx1) :][: region.shape[0], : region.shape[1]]
            region[ring] = 0.5 * (face_z + table_z)
            depth[y1:y2, x1:x2][crop_mask] = face_z
            rows, cols = np.nonzero(crop_mask)
            u_lo, u_hi, v_lo, v_hi = x1 + cols.min(), x1 + cols.max(), y1 + rows.min(), y1 + rows.max()
            boxes.append((u_lo, v_lo, u_hi + 1, v_hi + 1))
            masks.append(mask)
            class_ids.append(class_id)
            centers.append(((0.5 * (u_lo + u_hi) - cx) * face_z / fx, (0.5 * (v_lo + v_hi) - cy) * face_z / fy, face_z))
            sizes.append(((u_hi - u_lo + 1) * face_z / fx, (v_hi - v_lo + 1) * face_z / fy, 0.0))

        if self.depth_noise:
            ny, nx = rng.integers(0, height), rng.integers(0, width)
            noise = self._depth_noise[ny : ny + height, nx : nx + width]
            depth += noise * (0.001 * depth * depth)  # ~1 mm at 1 m, growing with range squared
            depth[self._depth_holes[ny : ny + height, nx : nx + width]] = np.nan
        count = len(boxes)
        return Scene(
            image_rgb=image,
            depth=depth,
            boxes=np.asarray(boxes, np.float32).reshape(count, 4),
            masks=np.asarray(masks, bool).reshape(count, height, width),
            class_ids=np.asarray(class_ids, np.int64),
            K=self.K.copy(),
            centers_3d=np.asarray(centers, np.float64).reshape(count, 3),
            sizes_3d=np.asarray(sizes, np.float64).reshape(count, 3),
        )

    def _place(
        self, rng: np.random.Generator, occupied: np.ndarray
    ) -> tuple[int, tuple[int, int, int, int], np.ndarray] | None:
        """A class, a box that overlaps no earlier part, and the part's mask inside the box."""
        short_side = min(self.width, self.height)
        for _ in range(20):
            class_id = int(rng.integers(len(self.class_names)))
            size = rng.uniform(*self.object_size) * short_side
            aspect = rng.uniform(0.6, 1.6)
            box_w = max(8, round(size * np.sqrt(aspect)))
            box_h = max(8, round(size / np.sqrt(aspect)))
            if box_w >= self.width or box_h >= self.height:
                continue
            x1 = int(rng.integers(0, self.width - box_w))
            y1 = int(rng.integers(0, self.height - box_h))
            if occupied[y1 : y1 + box_h, x1 : x1 + box_w].any():
                continue
            shape = PART_CATALOG[self.class_names[class_id]][0]
            crop_mask = _shape_mask(shape, box_h, box_w, flip=bool(rng.integers(2)))
            return class_id, (x1, y1, x1 + box_w, y1 + box_h), crop_mask
        return None


def _shape_mask(shape: str, height: int, width: int, flip: bool) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    centre = (width // 2, height // 2)
    axes = (max(1, width // 2 - 1), max(1, height // 2 - 1))
    if shape == "rectangle":
        canvas[:] = 1
    elif shape == "disk":
        cv2.ellipse(canvas, centre, axes, 0, 0, 360, 1, -1)
    elif shape == "ring":
        cv2.ellipse(canvas, centre, axes, 0, 0, 360, 1, -1)
        cv2.ellipse(canvas, centre, (axes[0] // 2, axes[1] // 2), 0, 0, 360, 0, -1)
    else:  # triangle, apex up or down
        apex_y, base_y = (height - 1, 0) if flip else (0, height - 1)
        points = np.array([[width // 2, apex_y], [0, base_y], [width - 1, base_y]], np.int32)
        cv2.fillConvexPoly(canvas, points, 1)
    return canvas.astype(bool)


def _table_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Grey-brown grain: low-frequency blotches plus fine noise, float32 RGB."""
    coarse = cv2.resize(rng.random((height // 16, width // 16)).astype(np.float32), (width, height))
    fine = rng.random((height, width)).astype(np.float32)
    grey = 90 + 60 * coarse + 25 * fine
    return np.stack([grey * 1.05, grey, grey * 0.9], axis=-1)


def _part_texture(rng: np.random.Generator, name: str, height: int, width: int) -> np.ndarray:
    """The part's colour modulated by its pattern (stripes, checker or speckle), float32 RGB."""
    _, colour, period = PART_CATALOG[name]
    yy, xx = np.mgrid[0:height, 0:width]
    if name == "block":
        pattern = ((yy // period) % 2).astype(np.float32)
    elif name == "wedge":
        pattern = (((yy // period) + (xx // period)) % 2).astype(np.float32)
    elif period:
        pattern = ((xx // period) % 2).astype(np.float32)
    else:
        pattern = rng.random((height, width)).astype(np.float32)
    shade = 0.75 + 0.25 * pattern
    return np.stack([c * shade for c in colour], axis=-1)


def write_coco_dataset(generator: SyntheticSceneGenerator, indices: Sequence[int], directory: str | Path) -> Path:
    """Writes scenes `indices` as PNG images plus a COCO `annotations.json` (boxes and RLE masks).

    Returns the annotation file's path; category ids are 1 + the generator's class index.
    """
    from pycocotools import mask as mask_utils

    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, index in enumerate(indices, start=1):
        scene = generator.render(index)
        file_name = f"images/scene_{index:06d}.png"
        cv2.imwrite(str(directory / file_name), cv2.cvtColor(scene.image_rgb, cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": file_name, "width": generator.width, "height": generator.height})
        for box, mask, class_id in zip(scene.boxes, scene.masks, scene.class_ids, strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(class_id) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(mask.sum()),
                    "segmentation": rle,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(generator.class_names)]
    path = directory / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path

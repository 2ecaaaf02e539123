"""COCO-format detection data for the trainable head: frozen encoder features cached on disk, and targets.

The encoder is frozen, so its patch features are computed once per image and kept in a float16
memory-mapped file keyed by the encoder's content identity (variant and `weights_identity`), the
input geometry, the dinov2_ros version and the image files; epochs then read features instead of
running the encoder. Images reach the encoder through the graph's own
preprocessing (`runtime.preprocess.Preprocess`), so training sees what deployment sees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from dinov2_ros import __version__
from dinov2_ros.model.camera_ends import Preprocess
from dinov2_ros.runtime.graph_spec import PATCH_SIZE, GraphSpec, ResizeMapping

_log = logging.getLogger(__name__)
BATCH_SIZE = 8  # images per encoder call when extracting features
MIN_SIGMA = 0.5  # patches: a part smaller than a patch still gets a peak of the right width


class PatchFeatureExtractor:
    """uint8 RGB images of any size -> the encoder's last-block patch features (N, D, h, w), float32;
    with `vision_head` (dino.txt), that head's patch tokens over them, as the dino.txt graph computes."""

    def __init__(
        self,
        backbone: nn.Module,
        input_size: tuple[int, int],
        resize: str = "stretch",
        vision_head: nn.Module | None = None,
    ) -> None:
        self.backbone = backbone.eval()
        self.vision_head = vision_head.eval() if vision_head is not None else None
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.resize = resize
        self.embed_dim = int(backbone.embed_dim)
        self.grid = (self.input_size[0] // PATCH_SIZE, self.input_size[1] // PATCH_SIZE)
        self._preprocess: dict[tuple[int, int], Preprocess] = {}

    def _spec(self, width: int, height: int) -> GraphSpec:
        return GraphSpec(
            variant="encoder",
            camera_height=height,
            camera_width=width,
            input_height=self.input_size[0],
            input_width=self.input_size[1],
            resize=self.resize,
            heads=(),
            features=True,
            embed_dim=self.embed_dim,
        )

    def mapping(self, width: int, height: int) -> ResizeMapping:
        """How a width x height camera image lands in the model input."""
        return self._spec(width, height).mapping()

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB images (H, W, 3) of any sizes -> (N, D, h, w); consecutive same-size images share
        an encoder call, BATCH_SIZE at most."""
        features = np.empty((len(images), self.embed_dim, *self.grid), np.float32)
        last = self.backbone.num_blocks - 1
        start = 0
        with torch.inference_mode():
            while start < len(images):
                height, width = images[start].shape[:2]
                stop = start + 1
                while stop < min(len(images), start + BATCH_SIZE) and images[stop].shape[:2] == (height, width):
                    stop += 1
                if (width, height) not in self._preprocess:
                    self._preprocess[(width, height)] = Preprocess(self._spec(width, height))
                batch = torch.from_numpy(np.stack([np.ascontiguousarray(i) for i in images[start:stop]]))
                x = self._preprocess[(width, height)](batch)
                tokens = self.backbone.get_intermediate_tokens(x, [last], norm=True)[0]
                if self.vision_head is not None:
                    tokens = self.vision_head(tokens)
                features[start:stop] = self.backbone.to_layer(tokens, self.grid)[0].numpy()
                start = stop
        return features


@dataclass(frozen=True)
class CocoDataset:
    """A COCO detection file: images, their boxes (and masks), contiguous class indices for the head."""

    annotation_file: Path
    image_root: Path
    coco: dict  # the parsed JSON, as pycocotools evaluation needs it
    annotations_by_image: dict[int, list[dict]]  # crowd regions left out
    category_ids: tuple[int, ...]  # class index -> COCO category id
    class_names: tuple[str, ...]

    @property
    def images(self) -> list[dict]:
        return self.coco["images"]

    def image_path(self, image: dict) -> Path:
        return self.image_root / image["file_name"]

    def read_image(self, image: dict) -> np.ndarray:
        bgr = cv2.imread(str(self.image_path(image)), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {self.image_path(image)} listed in {self.annotation_file}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_coco(annotation_file: str | os.PathLike, image_root: str | os.PathLike | None = None) -> CocoDataset:
    """Parse and check a COCO detection file; image paths are relative to `image_root` (default: its folder)."""
    annotation_file = Path(annotation_file)
    try:
        coco = json.loads(annotation_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read COCO annotations {annotation_file}: {error}") from error
    missing = [key for key in ("images", "annotations", "categories") if key not in coco]
    if missing:
        raise ValueError(f"{annotation_file} is not a COCO detection file: it lacks {missing}")
    if not coco["images"] or not coco["categories"]:
        raise ValueError(f"{annotation_file} lists no images or no categories; a detector needs both")
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    known = {c["id"] for c in categories}
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in coco["images"]}
    for annotation in coco["annotations"]:
        bbox = annotation.get("bbox")
        if annotation.get("category_id") not in known or annotation.get("image_id") not in by_image:
            raise ValueError(
                f"annotation {annotation.get('id')} in {annotation_file} names an unknown category or image"
            )
        if bbox is None or len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(
                f"annotation {annotation.get('id')} in {annotation_file} needs bbox [x, y, w, h], w, h > 0"
            )
        if not annotation.get("iscrowd", 0):
            by_image[annotation["image_id"]].append(annotation)
    return CocoDataset(
        annotation_file=annotation_file,
        image_root=Path(image_root) if image_root is not None else annotation_file.parent,
        coco=coco,
        annotations_by_image=by_image,
        category_ids=tuple(c["id"] for c in categories),
        class_names=tuple(c["name"] for c in categories),
    )


def cached_features(
    dataset: CocoDataset, extractor: PatchFeatureExtractor, cache_dir: str | os.PathLike, encoder_id: str
) -> np.ndarray:
    """Features (N, D, h, w) float16 of every image, computed once and memory-mapped from `cache_dir`.

    `encoder_id` must name the encoder and its weights by content (`dinov2-ros train-detector` passes
    'variant:' + model.content_identity.weights_identity(weights)): features of other weights are another
    cache. The entry is also keyed by input size, resize mode, the dinov2_ros version (the extraction
    code) and each image file's name, size and mtime.
    """
    files = []
    for image in dataset.images:
        stat = dataset.image_path(image).stat()
        files.append([image["file_name"], stat.st_size, stat.st_mtime_ns])
    key = {
        "encoder": encoder_id,
        "input_size": extractor.input_size,
        "resize": extractor.resize,
        "package_version": __version__,
        "files": files,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"features-{digest}.npy"
    if path.is_file():
        _log.info("using cached features %s", path)
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npy")
    shape = (len(dataset.images), extractor.embed_dim, *extractor.grid)
    features = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    started = last_report = time.monotonic()
    for start in range(0, len(dataset.images), BATCH_SIZE):
        chunk = dataset.images[start : start + BATCH_SIZE]
        features[start : start + len(chunk)] = extractor([dataset.read_image(image) for image in chunk])
        done, now = start + len(chunk), time.monotonic()
        if now - last_report > 5 or done == len(dataset.images):
            rate = done / max(now - started, 1e-9)
            _log.info("encoding images %d/%d (%.1f images/s)", done, len(dataset.images), rate)
            last_report = now
    features.flush()
    del features
    partial.replace(path)
    (path.with_suffix(".json")).write_text(json.dumps(key))
    return np.load(path, mmap_mode="r")


@dataclass(frozen=True)
class CenterTargets:
    """Per-image training targets on the patch grid, padded to the most objects in any image."""

    heatmap: np.ndarray  # (N, C, h, w) float16 Gaussian peaks, exactly 1 at object centres
    cells: np.ndarray  # (N, M) int64 flat grid cell of each object's centre
    boxes: np.ndarray  # (N, M, 4) float32: centre offset in its cell (x, y), log width, log height (patches)
    valid: np.ndarray  # (N, M) bool
    foreground: np.ndarray  # (N, h, w) float32 fraction of each patch covered by objects


def build_targets(dataset: CocoDataset, extractor: PatchFeatureExtractor) -> CenterTargets:
    """Boxes (and segmentation, if present) of every image mapped onto the model's patch grid."""
    from pycocotools import mask as mask_utils

    from dinov2_ros.perception.prototypes import coverage_from_box, coverage_from_mask

    height, width = extractor.grid
    class_of = {category_id: i for i, category_id in enumerate(dataset.category_ids)}
    per_image = [dataset.annotations_by_image[image["id"]] for image in dataset.images]
    count, most = len(per_image), max([len(a) for a in per_image] + [1])
    heatmap = np.zeros((count, len(class_of), height, width), np.float16)  # half the memory; 1.0 stays exact
    cells = np.zeros((count, most), np.int64)
    boxes = np.zeros((count, most, 4), np.float32)
    valid = np.zeros((count, most), bool)
    foreground = np.zeros((count, height, width), np.float32)
    rows, cols = np.mgrid[0:height, 0:width]
    for n, (image, image_annotations) in enumerate(zip(dataset.images, per_image, strict=True)):
        mapping = extractor.mapping(image["width"], image["height"])
        for m, annotation in enumerate(image_annotations):
            x, y, w, h = annotation["bbox"]
            (x1, y1), (x2, y2) = mapping.camera_to_input(np.array([[x, y], [x + w, y + h]])) / PATCH_SIZE
            centre_x, centre_y = min((x1 + x2) / 2, width - 1e-3), min((y1 + y2) / 2, height - 1e-3)
            col, row = int(centre_x), int(centre_y)
            sigma = max(MIN_SIGMA, np.sqrt((x2 - x1) * (y2 - y1)) / 6)
            peak = np.exp(-((cols - col) ** 2 + (rows - row) ** 2) / (2 * sigma * sigma))
            channel = heatmap[n, class_of[annotation["category_id"]]]
            np.maximum(channel, peak, out=channel)
            cells[n, m] = row * width + col
            boxes[n, m] = (centre_x - col, centre_y - row, np.log(x2 - x1), np.log(y2 - y1))
            valid[n, m] = True
            segmentation = annotation.get("segmentation")
            if segmentation:
                if isinstance(segmentation, list):  # polygons
                    segmentation = mask_utils.merge(
                        mask_utils.frPyObjects(segmentation, image["height"], image["width"])
                    )
                elif isinstance(segmentation["counts"], list):  # uncompressed RLE
                    segmentation = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
                with warnings.catch_warnings():  # pycocotools 2.0 + NumPy 2 warn about __array__(copy=...)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    mask = mask_utils.decode(segmentation).astype(bool)
                cover = coverage_from_mask(mask, mapping, extractor.grid)
            else:
                cover = coverage_from_box([x, y, x + w, y + h], mapping, extractor.grid)
            np.maximum(foreground[n], cover, out=foreground[n])
    return CenterTargets(heatmap, cells, boxes, valid, foreground)

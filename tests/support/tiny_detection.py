"""Shared pieces of the detection tests: a tiny random DINOv2 encoder, synthetic scenes, and scoring.

Pretrained weights are not available here, so every test runs on a 2-block, 64-wide encoder with
random weights (seeded): its patch tokens still separate the synthetic parts by colour and texture.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

from dinov2_ros.model import DinoVisionTransformer
from dinov2_ros.perception.prototypes import PrototypeStore, coverage_from_mask, foreground_prototype
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator
from dinov2_ros.tools.training.detector_dataset import PatchFeatureExtractor

SIZE = 224  # scenes and model input: a 16 x 16 patch grid
TINY_ENCODER = "tiny:random-seed0"


def tiny_encoder() -> DinoVisionTransformer:
    torch.manual_seed(0)
    encoder = DinoVisionTransformer(embed_dim=64, depth=2, num_heads=2, img_size=SIZE)
    encoder.init_weights()
    return encoder.eval()


def scene_generator(seed: int = 0) -> SyntheticSceneGenerator:
    """Parts of 45..78 px (3..5.5 patches), 1 to 3 per scene."""
    return SyntheticSceneGenerator(seed, SIZE, SIZE, objects_per_scene=(1, 3), object_size=(0.2, 0.35))


def teach_from_scenes(
    extractor: PatchFeatureExtractor, generator: SyntheticSceneGenerator, indices: range
) -> PrototypeStore:
    """One prototype per part in the scenes `indices`, from its ground-truth mask."""
    store = PrototypeStore(TINY_ENCODER, (SIZE, SIZE), extractor.embed_dim)
    mapping = extractor.mapping(SIZE, SIZE)
    for index in indices:
        scene = generator.render(index)
        features = extractor([scene.image_rgb])[0]
        for mask, class_id in zip(scene.masks, scene.class_ids, strict=True):
            coverage = coverage_from_mask(mask, mapping, extractor.grid)
            store.add_prototypes(generator.class_names[class_id], foreground_prototype(features, coverage)[None])
    return store


def count_matches(
    boxes: np.ndarray, classes: np.ndarray, truth_boxes: np.ndarray, truth_classes: np.ndarray, iou: float = 0.5
) -> int:
    """Detections that match a distinct ground-truth part of the same class at IoU >= `iou` (greedy)."""
    if not len(boxes) or not len(truth_boxes):
        return 0
    overlaps = mask_utils.iou(_xywh(boxes), _xywh(truth_boxes), [0] * len(truth_boxes))
    used: set[int] = set()
    for d in range(len(boxes)):
        candidates = [
            j for j in range(len(truth_boxes))
            if j not in used and overlaps[d, j] >= iou and truth_classes[j] == classes[d]
        ]  # fmt: skip
        if candidates:
            used.add(max(candidates, key=lambda j: overlaps[d, j]))
    return len(used)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)

"""COCO box mAP with pycocotools, the maintained reference implementation (no hand-written matching)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


@dataclass(frozen=True)
class CocoMetrics:
    """Box AP averaged over IoU 0.50:0.95 and at IoU 0.50 (maxDets 100, all areas), and per class."""

    map_50_95: float
    map_50: float
    per_class_ap: dict[str, float]  # AP@[.5:.95] by category name; NaN for a class absent from the truth


def coco_index(dataset: dict) -> COCO:
    """A pycocotools COCO index over an in-memory dataset dict, filling the optional `area`/`iscrowd`."""
    annotations = []
    for annotation in dataset.get("annotations", []):
        width, height = annotation["bbox"][2:]
        annotations.append({"area": float(width * height), "iscrowd": 0, **annotation})
    coco = COCO()
    coco.dataset = {**dataset, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
        coco.createIndex()
    return coco


def evaluate_detections(ground_truth: dict, detections: Sequence[dict]) -> CocoMetrics:
    """Score `detections` (COCO result dicts: image_id, category_id, bbox [x, y, w, h], score) against
    the COCO-format `ground_truth` dict."""
    if not ground_truth.get("annotations"):
        raise ValueError("the ground truth has no annotations, so mAP is undefined; evaluate on annotated images")
    truth = coco_index(ground_truth)
    names = {category["id"]: category["name"] for category in ground_truth["categories"]}
    if not detections:
        return CocoMetrics(0.0, 0.0, {name: 0.0 for name in names.values()})
    unknown_images = {d["image_id"] for d in detections} - set(truth.getImgIds())
    if unknown_images:
        raise ValueError(f"detections name image ids {sorted(unknown_images)[:5]} that the ground truth lacks")
    with contextlib.redirect_stdout(io.StringIO()):
        results = truth.loadRes([dict(d) for d in detections])
        evaluation = COCOeval(truth, results, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # precision: (IoU thresholds, recall points, categories, area ranges, max detections); -1 = no truth
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for column, category_id in enumerate(evaluation.params.catIds):
        values = precision[:, :, column]
        per_class[names[category_id]] = float(values[values > -1].mean()) if (values > -1).any() else float("nan")
    return CocoMetrics(float(evaluation.stats[0]), float(evaluation.stats[1]), per_class)

"""Training of the CenterHead on cached frozen-encoder features, with validation mAP, checkpoints and a plot.

Losses follow CenterNet: a penalty-reduced focal loss on the centre heatmap, L1 on the centre offset
and log box size at object centres, plus binary cross-entropy on the per-patch foreground cover.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinov2_ros.model.heads.center import CenterHead, CenterHeadInfo, save_center_head
from dinov2_ros.model.random_weights import seeded
from dinov2_ros.tools.evaluation.coco_evaluation import CocoMetrics, evaluate_detections
from dinov2_ros.tools.training.detector_dataset import (
    CenterTargets,
    CocoDataset,
    PatchFeatureExtractor,
    build_targets,
    cached_features,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    hidden_dim: int = 128
    seed: int = 0
    top_k: int = 100


@dataclass(frozen=True)
class TrainingResult:
    head: CenterHead
    info: CenterHeadInfo
    history: list[dict]  # per epoch: epoch, loss, loss parts, val map_50_95 and map_50 when validated
    best_checkpoint: Path
    last_checkpoint: Path
    plot: Path


def center_losses(
    outputs: dict[str, torch.Tensor],
    heatmap: torch.Tensor,
    cells: torch.Tensor,
    boxes: torch.Tensor,
    valid: torch.Tensor,
    foreground: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Heatmap focal loss (per object), box L1 (per object) and foreground BCE (per patch)."""
    logits = outputs["heatmap"]
    probability = torch.sigmoid(logits)
    positive = heatmap >= 1.0
    objects = valid.sum().clamp(min=1)
    positive_term = (1 - probability) ** 2 * F.logsigmoid(logits)
    negative_term = (1 - heatmap) ** 4 * probability**2 * F.logsigmoid(-logits)
    heat_loss = -(torch.where(positive, positive_term, negative_term)).sum() / objects
    predicted = outputs["box"].flatten(2).gather(2, cells[:, None, :].expand(-1, 4, -1)).transpose(1, 2)
    box_loss = (F.l1_loss(predicted, boxes, reduction="none").sum(-1) * valid).sum() / objects
    foreground_loss = F.binary_cross_entropy_with_logits(outputs["foreground"][:, 0], foreground)
    return {"heatmap": heat_loss, "box": box_loss, "foreground": foreground_loss}


def detect(
    head: CenterHead, features: np.ndarray, dataset: CocoDataset, extractor: PatchFeatureExtractor, batch_size: int = 32
) -> list[dict]:
    """COCO result dicts (boxes in each image's pixels) for every image of `dataset` from its features."""
    results = []
    head.eval()
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            batch = torch.from_numpy(np.asarray(features[start : start + batch_size], np.float32))
            boxes, scores, classes, _ = head(batch)
            for offset, (image_boxes, image_scores, image_classes) in enumerate(
                zip(boxes, scores, classes, strict=True)
            ):
                image = dataset.images[start + offset]
                mapping = extractor.mapping(image["width"], image["height"])
                corners = mapping.input_to_camera(image_boxes.numpy().reshape(-1, 2, 2))
                corners[..., 0] = corners[..., 0].clip(0, image["width"])
                corners[..., 1] = corners[..., 1].clip(0, image["height"])
                for (x1, y1), (x2, y2), score, class_index in zip(
                    corners[:, 0], corners[:, 1], image_scores.tolist(), image_classes.long().tolist(), strict=True
                ):
                    if score > 0 and x2 > x1 and y2 > y1:
                        results.append(
                            {
                                "image_id": image["id"],
                                "category_id": dataset.category_ids[class_index],
                                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                "score": float(score),
                            }
                        )
    return results


def evaluate_head(
    head: CenterHead, features: np.ndarray, dataset: CocoDataset, extractor: PatchFeatureExtractor
) -> CocoMetrics:
    """COCO mAP of the head on `dataset`, from the dataset's cached `features`."""
    return evaluate_detections(dataset.coco, detect(head, features, dataset, extractor))


def plot_history(history: list[dict], path: Path) -> Path:
    """PNG of training loss and validation mAP per epoch (matplotlib's Agg canvas: no display, no pyplot state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    loss_axis = figure.add_subplot()
    epochs = [entry["epoch"] for entry in history]
    loss_axis.plot(epochs, [entry["loss"] for entry in history], color="tab:blue")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    validated = [entry for entry in history if "map_50" in entry]
    if validated:
        map_axis = loss_axis.twinx()
        map_epochs = [entry["epoch"] for entry in validated]
        map_axis.plot(map_epochs, [entry["map_50"] for entry in validated], color="tab:orange", label="mAP@.5")
        map_axis.plot(map_epochs, [entry["map_50_95"] for entry in validated], color="tab:red", label="mAP@[.5:.95]")
        map_axis.set_ylabel("validation mAP")
        map_axis.set_ylim(0, 1)
        map_axis.legend(loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _batches(targets: CenterTargets, features: np.ndarray, order: np.ndarray, batch_size: int):
    for start in range(0, len(order), batch_size):
        index = np.sort(order[start : start + batch_size])  # sorted: sequential reads of the memmap
        yield (
            torch.from_numpy(np.asarray(features[index], np.float32)),
            torch.from_numpy(targets.heatmap[index]).float(),
            torch.from_numpy(targets.cells[index]),
            torch.from_numpy(targets.boxes[index]),
            torch.from_numpy(targets.valid[index]).float(),
            torch.from_numpy(targets.foreground[index]),
        )


def train_center_head(
    train: CocoDataset,
    validation: CocoDataset | None,
    backbone: nn.Module,
    encoder: str,
    encoder_id: str,
    input_size: tuple[int, int],
    output_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    config: TrainingConfig = TrainingConfig(),
    resize: str = "stretch",
) -> TrainingResult:
    """Train on `train`, validate on `validation` each epoch, keep `last.pt` and `best.pt` (by val mAP@[.5:.95]).

    `encoder` is the encoder name stored in the checkpoint (`prototypes.encoder_name`); `encoder_id`
    names the encoder's weights by content and keys the feature cache (see `cached_features`).
    """
    if validation is not None and validation.class_names != train.class_names:
        raise ValueError(
            f"validation classes {validation.class_names} differ from training classes {train.class_names}; "
            "use one category list for both"
        )
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"need epochs >= 1 and batch_size >= 1, got {config.epochs} and {config.batch_size}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    extractor = PatchFeatureExtractor(backbone, input_size, resize)
    train_features = cached_features(train, extractor, cache_dir, encoder_id)
    val_features = cached_features(validation, extractor, cache_dir, encoder_id) if validation else None
    targets = build_targets(train, extractor)
    with seeded(config.seed):  # the head's initial weights follow the config's seed, not the caller's RNG
        head = CenterHead(extractor.embed_dim, len(train.class_names), config.hidden_dim, config.top_k)
    info = CenterHeadInfo(
        encoder, extractor.input_size, resize, train.class_names, extractor.embed_dim, config.hidden_dim
    )
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = config.epochs * -(-len(train.images) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(config.seed)
    history: list[dict] = []
    best_score = -1.0
    last_path, best_path = output_dir / "last.pt", output_dir / "best.pt"
    for epoch in range(1, config.epochs + 1):
        started = time.monotonic()
        head.train()
        sums = {"loss": 0.0, "heatmap": 0.0, "box": 0.0, "foreground": 0.0}
        batches = 0
        for features, *batch_targets in _batches(
            targets, train_features, rng.permutation(len(train.images)), config.batch_size
        ):
            losses = center_losses(head.predict(features), *batch_targets)
            loss = losses["heatmap"] + losses["box"] + losses["foreground"]
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            sums["loss"] += loss.item()
            for name, value in losses.items():
                sums[name] += value.item()
            batches += 1
        entry = {"epoch": epoch, **{name: value / batches for name, value in sums.items()}}
        if validation is not None:
            metrics = evaluate_head(head, val_features, validation, extractor)
            entry.update(map_50_95=metrics.map_50_95, map_50=metrics.map_50)
        history.append(entry)
        save_center_head(last_path, head, info)
        score = entry.get("map_50_95", -entry["loss"])
        if score > best_score:
            best_score = score
            save_center_head(best_path, head, info)
        validation_text = (
            f" val mAP@[.5:.95] {entry['map_50_95']:.3f} mAP@.5 {entry['map_50']:.3f}" if validation else ""
        )
        _log.info(
            "epoch %d/%d loss %.4f (heatmap %.4f box %.4f foreground %.4f)%s %.1f s",
            epoch, config.epochs, entry["loss"], entry["heatmap"], entry["box"], entry["foreground"],
            validation_text, time.monotonic() - started,
        )  # fmt: skip
    (output_dir / "history.json").write_text(json.dumps({"config": asdict(config), "history": history}, indent=1))
    plot = plot_history(history, output_dir / "training.png")
    return TrainingResult(head.eval(), info, history, best_path, last_path, plot)

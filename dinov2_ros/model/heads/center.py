"""A small trainable detection head on frozen patch features (CenterNet style), its decode and checkpoint.

Per patch it predicts a centre heatmap per class, the centre's offset inside the patch, the box size,
and a class-agnostic foreground logit that sharpens the mask inside each box. The decode is dense and
of static shape (peaks by max-pool, torch.topk), so it exports with the encoder into one graph.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dinov2_ros.atomic_file import atomic_write
from dinov2_ros.model.checkpoint import CheckpointError, load_strictly
from dinov2_ros.model.heads.exemplar import pad_detections
from dinov2_ros.weights.file_kind import not_a_checkpoint

CHECKPOINT_FORMAT = "dinov2_ros.center_head"
CHECKPOINT_VERSION = 1
HEATMAP_PRIOR = 0.1  # initial centre probability, as CenterNet, so early focal-loss gradients are sane
MAX_LOG_SIZE = 6.0  # exp(6) = 403 patches: larger than any input
BOX_MASK_SLOPE = 4.0  # mask logit per patch of distance inside the box edge


class CenterHead(nn.Module):
    """Patch map (B, D, h, w) -> (boxes (B, K, 4) xyxy model-input px, scores (B, K), classes (B, K), masks).

    Empty rows (fewer peaks than K) have score 0 and class -1.
    """

    def __init__(
        self, embed_dim: int, num_classes: int, hidden_dim: int = 128, top_k: int = 100, patch_size: int = 14
    ) -> None:
        super().__init__()
        if embed_dim < 1 or num_classes < 1 or hidden_dim < 1 or top_k < 1:
            raise ValueError(
                f"CenterHead needs positive sizes, got embed_dim={embed_dim}, num_classes={num_classes}, "
                f"hidden_dim={hidden_dim}, top_k={top_k}"
            )
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.top_k = top_k
        self.patch_size = patch_size
        self.trunk = nn.Sequential(
            nn.Conv2d(embed_dim, hidden_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.heatmap = nn.Conv2d(hidden_dim, num_classes, 1)
        self.box = nn.Conv2d(hidden_dim, 4, 1)  # centre offset x, y in patches; log width, height in patches
        self.foreground = nn.Conv2d(hidden_dim, 1, 1)
        nn.init.constant_(self.heatmap.bias, -torch.log(torch.tensor((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR)).item())

    def predict(self, patch_map: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dense outputs, what training compares with targets: heatmap, box and foreground logits."""
        hidden = self.trunk(patch_map)
        return {"heatmap": self.heatmap(hidden), "box": self.box(hidden), "foreground": self.foreground(hidden)}

    def forward(self, patch_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(self.predict(patch_map))

    def decode(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-K heatmap peaks (per class, 3x3 max-pool) -> boxes, scores, classes, mask logits."""
        heat = torch.sigmoid(outputs["heatmap"].float())
        num_classes, height, width = heat.shape[1:]
        cells = height * width
        peaks = heat * (heat == F.max_pool2d(heat, 3, stride=1, padding=1)).to(heat.dtype)
        k = min(self.top_k, num_classes * cells)
        scores, index = peaks.flatten(1).topk(k, dim=1)
        class_ids = torch.div(index, cells, rounding_mode="floor")
        cell = index - class_ids * cells
        row_index = torch.div(cell, width, rounding_mode="floor")
        row, col = row_index.to(heat.dtype), (cell - row_index * width).to(heat.dtype)
        box = outputs["box"].float().flatten(2).gather(2, cell[:, None, :].expand(-1, 4, -1))  # (B, 4, k)
        centre_x, centre_y = col + box[:, 0], row + box[:, 1]
        half_w = 0.5 * torch.exp(box[:, 2].clamp(max=MAX_LOG_SIZE))
        half_h = 0.5 * torch.exp(box[:, 3].clamp(max=MAX_LOG_SIZE))
        boxes_patches = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], -1)

        # mask: inside the box (soft, by distance to its nearest edge) and foreground
        grid_y = torch.arange(height, device=heat.device, dtype=heat.dtype)[:, None] + 0.5
        grid_x = torch.arange(width, device=heat.device, dtype=heat.dtype)[None, :] + 0.5
        x1, y1, x2, y2 = (boxes_patches[..., i, None, None] for i in range(4))
        inside = torch.minimum(torch.minimum(grid_x - x1, x2 - grid_x), torch.minimum(grid_y - y1, y2 - grid_y))
        masks = torch.minimum(BOX_MASK_SLOPE * inside, outputs["foreground"].float())  # (B, k, h, w)
        # empty rows (fewer peaks than K) are canonical: score 0, zero box, class -1, mask -1
        live = scores > 0
        boxes = boxes_patches * self.patch_size * live[..., None].to(heat.dtype)
        classes_out = torch.where(live, class_ids.to(heat.dtype), heat.new_tensor(-1.0))
        masks = torch.where(live[..., None, None], masks, masks.new_tensor(-1.0))
        return pad_detections(boxes, scores, classes_out, masks, self.top_k)


@dataclass(frozen=True)
class CenterHeadInfo:
    """What a trained head is tied to: the encoder and input it was trained on, and its classes."""

    encoder: str
    input_size: tuple[int, int]  # (height, width) of the model input
    resize: str  # how camera images were fitted to the input: "stretch" or "letterbox"
    class_names: tuple[str, ...]
    embed_dim: int
    hidden_dim: int


def save_center_head(path: str | os.PathLike, head: CenterHead, info: CenterHeadInfo) -> Path:
    """Write weights and CenterHeadInfo to `path` atomically (a crash never leaves half a file)."""
    if len(info.class_names) != head.num_classes or info.embed_dim != head.embed_dim:
        raise ValueError(
            f"CenterHeadInfo ({len(info.class_names)} classes, embed_dim {info.embed_dim}) does not describe "
            f"the head ({head.num_classes} classes, embed_dim {head.embed_dim})"
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "info": {**asdict(info), "input_size": list(info.input_size), "class_names": list(info.class_names)},
        "state_dict": {key: value.detach().cpu() for key, value in head.state_dict().items()},
    }
    path = Path(path)
    with atomic_write(path) as temporary:
        torch.save(payload, temporary)
    return path


def load_center_head(
    path: str | os.PathLike,
    expected_encoder: str | None = None,
    expected_input_size: Sequence[int] | None = None,
    top_k: int = 100,
    expected_resize: str | None = None,
) -> tuple[CenterHead, CenterHeadInfo]:
    """Load a head saved by save_center_head; refuse one trained for another encoder, input size or resize."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"detector checkpoint {path} does not exist; train one with `dinov2-ros train-detector`")
    problem = not_a_checkpoint(path, "copy it again or retrain it with `dinov2-ros train-detector`")
    if problem is not None:
        raise CheckpointError(problem)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CheckpointError(f"could not read detector checkpoint {path} ({error}); the file is corrupt") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a detection-head checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            "pass a file written by `dinov2-ros train-detector`"
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}, this dinov2_ros reads version "
            f"{CHECKPOINT_VERSION}; retrain the head or use the dinov2_ros release that wrote it"
        )
    raw = payload["info"]
    info = CenterHeadInfo(**{**raw, "input_size": tuple(raw["input_size"]), "class_names": tuple(raw["class_names"])})
    if expected_encoder is not None and info.encoder != expected_encoder:
        raise CheckpointError(
            f"{path} was trained on encoder {info.encoder!r} features, not {expected_encoder!r}; use the "
            f"{info.encoder} encoder or retrain the head on {expected_encoder}"
        )
    if expected_input_size is not None and tuple(expected_input_size) != info.input_size:
        raise CheckpointError(
            f"{path} was trained at input size {info.input_size} (height, width), not {tuple(expected_input_size)}; "
            "export the graph at the training size or retrain"
        )
    if expected_resize is not None and expected_resize != info.resize:
        raise CheckpointError(
            f"{path} was trained on {info.resize!r}-resized images, the graph uses {expected_resize!r}; "
            f"export the graph with resize={info.resize!r} or retrain"
        )
    head = CenterHead(info.embed_dim, len(info.class_names), info.hidden_dim, top_k=top_k)
    load_strictly(head, payload["state_dict"], f"detector checkpoint {path}")
    return head.eval(), info

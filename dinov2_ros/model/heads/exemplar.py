"""Few-shot detection by cosine similarity of patch tokens to taught prototypes, as one exportable module.

Prototypes and their class ids are graph inputs with a fixed maximum count, so classes are taught and
forgotten at run time without rebuilding the engine. Every step is a dense tensor op of static shape
(no nonzero, no connected components): peaks by max-pool, top-K by torch.topk, instance regions by a
fixed number of masked dilations from each peak.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TIE_BREAK = 1e-3  # cosine added to earlier patches when choosing peaks; above fp32 resolution, below any signal
MASK_SCORE_UNIT = 0.1  # mask logit magnitude: 0.5 + (score margin over the region threshold) / this


class ExemplarHead(nn.Module):
    """Patch map (B, D, h, w) + prototypes -> (boxes, scores, classes, masks) for the top-K instances.

    A patch's score for a class is `sigmoid((cos - similarity_threshold) / temperature)` of its best
    cosine over that class's prototypes. Instances are the local maxima (3x3) of each patch's best
    cosine over all classes; an instance's region is grown from its peak, up to `grow_steps` patches, over patches of the same best
    class whose score is at least `region_fraction` of the peak's; a weaker peak inside that region is
    dropped as a duplicate (so touching parts of one class merge). Boxes enclose the region, in
    model-input pixels on patch edges.
    """

    def __init__(
        self,
        max_classes: int = 16,
        top_k: int = 100,
        similarity_threshold: float = 0.5,
        temperature: float = 0.05,
        region_fraction: float = 0.5,
        grow_steps: int = 12,
        patch_size: int = 14,
    ) -> None:
        super().__init__()
        if max_classes < 1 or top_k < 1 or grow_steps < 0 or temperature <= 0 or not 0 < region_fraction <= 1:
            raise ValueError(
                "ExemplarHead needs max_classes >= 1, top_k >= 1, grow_steps >= 0, temperature > 0 and "
                f"0 < region_fraction <= 1; got {max_classes}, {top_k}, {grow_steps}, {temperature}, {region_fraction}"
            )
        self.max_classes = max_classes
        self.top_k = top_k
        self.similarity_threshold = similarity_threshold
        self.temperature = temperature
        self.region_fraction = region_fraction
        self.grow_steps = grow_steps
        self.patch_size = patch_size

    def class_cosines(
        self, patch_map: torch.Tensor, prototypes: torch.Tensor, prototype_classes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Best cosine of every patch to each class's prototypes (B, C, h*w), -1 for a class without any, and
        which classes have any (B, C). Each frame has its own prototypes (B, P, D), so frames of different
        cameras or nodes, with different classes, share one batch (a Triton server batching its clients)."""
        features = F.normalize(patch_map.flatten(2).float(), dim=1)  # (B, D, N)
        cosines = torch.matmul(F.normalize(prototypes.float(), dim=2), features)  # (B, P, N)
        class_ids = torch.arange(self.max_classes, device=patch_map.device)
        membership = prototype_classes.long()[:, :, None] == class_ids  # (B, P, C); -1 slots match none
        per_class = torch.where(membership[..., None], cosines[:, :, None, :], cosines.new_tensor(-1.0))
        return per_class.amax(dim=1), membership.any(dim=1)

    def forward(
        self, patch_map: torch.Tensor, prototypes: torch.Tensor, prototype_classes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """prototypes (B, P, D) float, prototype_classes (B, P) int (-1 = empty slot), per frame ->
        boxes (B, K, 4) xyxy model-input pixels, scores (B, K) in [0, 1], classes (B, K) float,
        masks (B, K, h, w) logits (positive inside the instance). Empty rows: score 0, class -1."""
        batch, _, height, width = patch_map.shape
        cells = height * width
        class_cos, class_taught = self.class_cosines(patch_map, prototypes, prototype_classes)
        scores = torch.sigmoid((class_cos - self.similarity_threshold) / self.temperature)
        scores = scores * class_taught[:, :, None].to(scores.dtype)  # exactly 0 without prototypes

        # peaks on the cosine, not the score (sigmoid saturates to equal values), with ties broken in
        # raster order by at most TIE_BREAK, so a plateau (a uniform part) has one peak, not one per patch
        best_cos, best_class = class_cos.max(dim=1)  # (B, N)
        raster = torch.arange(cells, 0, -1, device=patch_map.device).to(best_cos.dtype) * (TIE_BREAK / cells)
        cos_map = (best_cos + raster).view(batch, 1, height, width)
        is_peak = (cos_map == F.max_pool2d(cos_map, 3, stride=1, padding=1)).flatten(1)
        best_score = scores.gather(1, best_class[:, None]).squeeze(1)
        k = min(self.top_k, cells)
        top_scores, top_cells = torch.where(is_peak, best_score, torch.zeros_like(best_score)).topk(k, dim=1)
        top_class = best_class.gather(1, top_cells)  # (B, k)
        live = top_scores > 0

        # region of each instance: grown from its peak over patches whose best class is the instance's
        # and whose score is at least region_fraction of the peak's (a connected component, unrolled)
        same_class = top_class[..., None] == best_class[:, None, :]  # (B, k, N)
        instance_scores = scores.gather(1, top_class[..., None].expand(-1, -1, cells))  # (B, k, N)
        threshold = self.region_fraction * top_scores[..., None]
        allowed = (same_class & (instance_scores >= threshold)).to(patch_map.dtype).view(batch * k, 1, height, width)
        region = F.one_hot(top_cells.flatten(), cells).to(patch_map.dtype).view(batch * k, 1, height, width)
        for _ in range(self.grow_steps):
            region = _dilate(region) * allowed
        region = region.view(batch, k, cells) > 0

        # a peak inside the region of a stronger instance is a second peak of that instance, not a new one
        peak_inside = region.gather(2, top_cells[:, None, :].expand(-1, k, -1))  # (B, i, j): peak j in region i
        stronger = torch.ones(k, k, dtype=torch.bool, device=patch_map.device).triu(diagonal=1)
        live = live & ~(peak_inside & stronger[None]).any(dim=1)
        top_scores = top_scores * live.to(top_scores.dtype)
        region = region.view(batch, k, height, width)

        # empty rows (score 0) are canonical, so every backend returns the same: zero box, class -1, mask -1
        boxes = self._enclosing_boxes(region) * live[..., None].to(patch_map.dtype)
        classes = torch.where(live, top_class.to(patch_map.dtype), patch_map.new_tensor(-1.0))
        margin = ((instance_scores - threshold).abs() / MASK_SCORE_UNIT + 0.5).view(batch, k, height, width)
        masks = torch.where(region, margin, -margin)
        masks = torch.where(live[..., None, None], masks, masks.new_tensor(-1.0))
        return pad_detections(boxes, top_scores, classes, masks, self.top_k)

    def _enclosing_boxes(self, region: torch.Tensor) -> torch.Tensor:
        """(B, k, h, w) bool -> (B, k, 4) xyxy model-input pixels on patch edges."""
        height, width = region.shape[-2:]
        cols = torch.arange(width, device=region.device).to(torch.float32)
        rows = torch.arange(height, device=region.device).to(torch.float32)
        in_col, in_row = region.any(dim=2), region.any(dim=3)  # (B, k, w), (B, k, h)
        x1 = torch.where(in_col, cols, cols.new_tensor(float(width))).amin(dim=-1)
        x2 = torch.where(in_col, cols, cols.new_tensor(-1.0)).amax(dim=-1) + 1
        y1 = torch.where(in_row, rows, rows.new_tensor(float(height))).amin(dim=-1)
        y2 = torch.where(in_row, rows, rows.new_tensor(-1.0)).amax(dim=-1) + 1
        return torch.stack([x1, y1, x2, y2], dim=-1) * self.patch_size


def pad_detections(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, masks: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad the rows of (boxes, scores, classes, masks) to top_k with empty ones (score 0, class -1, mask -1),
    for a grid with fewer candidates than top_k; shared by ExemplarHead and CenterHead."""
    missing = top_k - scores.shape[1]
    if missing == 0:
        return boxes, scores, classes, masks
    return (
        F.pad(boxes, (0, 0, 0, missing)),
        F.pad(scores, (0, missing)),
        F.pad(classes, (0, missing), value=-1.0),
        F.pad(masks, (0, 0, 0, 0, 0, missing), value=-1.0),
    )


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """3x3 dilation of a 0/1 map (N, 1, h, w). Exported, one MaxPool: ONNX Runtime runs it 1.7-2.5x
    faster than the 11 Pad/Slice/Max ops of the slices (exemplar head alone, grids 16x16 and 32x32).
    In eager torch, two separable maxima of shifted slices: max_pool2d takes ~8 ms there, the slices
    0.06-0.15 ms. Both give the same 0/1 map."""
    if torch.onnx.is_in_onnx_export():
        return F.max_pool2d(mask, 3, stride=1, padding=1)
    padded = F.pad(mask, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])

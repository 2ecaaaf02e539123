"""Resize the learned 37 x 37 positional embedding to another patch grid, by the two official rules.

Meta's released models disagree on how to interpolate, and features drift if the rule is wrong:
- "offset" (models without registers): bicubic with `scale_factor = ((h + 0.1) / M, (w + 0.1) / M)`,
  no antialiasing. The +0.1 was added to dodge a float rounding bug in the output size; it also shifts
  the sampling grid slightly, which Hugging Face's `Dinov2Model` does not reproduce (transformers #32175).
- "antialias" (`_reg4` models): bicubic to `size = (h, w)` with antialiasing.
Both interpolate in fp32 and are skipped when the grid is the stored M x M one.
"""

from __future__ import annotations

import math
from typing import get_args

import torch
import torch.nn.functional as F

from dinov2_ros.weights.variants import PosEmbedRule

POS_EMBED_RULES: tuple[str, ...] = get_args(PosEmbedRule)
INTERPOLATE_OFFSET = 0.1


def stored_grid_side(pos_embed: torch.Tensor) -> int:
    """Side M of the square patch grid a (1, 1 + M*M, D) positional embedding was trained for."""
    side = math.isqrt(pos_embed.shape[1] - 1)
    if side * side != pos_embed.shape[1] - 1:
        raise ValueError(
            f"pos_embed must hold 1 + M*M positions for a square grid, got {pos_embed.shape[1]}; "
            "the checkpoint does not come from a DINOv2 ViT"
        )
    return side


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_hw: tuple[int, int], rule: PosEmbedRule) -> torch.Tensor:
    """(1, 1 + M*M, D) -> (1, 1 + h*w, D) in fp32 for a patch grid of h rows and w columns."""
    if rule not in POS_EMBED_RULES:
        raise ValueError(f"pos-embed rule must be one of {POS_EMBED_RULES}, got {rule!r}")
    side = stored_grid_side(pos_embed)
    height, width = grid_hw
    pos_embed = pos_embed.float()
    if height == side and width == side:
        return pos_embed
    dim = pos_embed.shape[-1]
    cls_pos = pos_embed[:, :1]
    grid = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if rule == "offset":
        scale = ((height + INTERPOLATE_OFFSET) / side, (width + INTERPOLATE_OFFSET) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
    else:
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", antialias=True)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, height * width, dim)
    return torch.cat((cls_pos, patch_pos), dim=1)

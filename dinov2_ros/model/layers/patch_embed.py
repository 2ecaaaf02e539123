"""Image to patch tokens: one strided convolution (`patch_embed.proj` in the checkpoints)."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Cut a (B, C, H, W) image into non-overlapping patches and project each to `embed_dim`."""

    def __init__(self, patch_size: int = 14, in_chans: int = 3, embed_dim: int = 384) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/p * W/p, D), patches in row-major order."""
        return self.proj(x).flatten(2).transpose(1, 2)

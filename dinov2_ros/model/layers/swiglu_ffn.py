"""The SwiGLU feed-forwards: ViT-g's (gate and value fused in `w12`) and dino.txt's vision head blocks'
(`w1`, `w2` apart, width aligned to 64), each with its checkpoint's parameter names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swiglu_hidden_features(dim: int, mlp_ratio: float = 4.0) -> int:
    """Hidden width DINOv2 uses: two thirds of the MLP width, rounded up to a multiple of 8 (4096 for g)."""
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


def aligned_swiglu_hidden_features(dim: int, mlp_ratio: float = 4.0, align_to: int = 64) -> int:
    """Hidden width of Meta's SwiGLUFFNAligned: two thirds of the MLP width, rounded up to a multiple of
    `align_to` (2752 for dino.txt's 1024-wide head blocks, built with align_to=64)."""
    two_thirds = int(int(dim * mlp_ratio) * 2 / 3)
    return two_thirds + (-two_thirds % align_to)


class SwiGLUFFN(nn.Module):
    """silu(x W1) * (x W2) -> W3, with W1 and W2 stacked in one `w12` linear (gate rows first)."""

    def __init__(self, dim: int, hidden_features: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden_features)
        self.w3 = nn.Linear(hidden_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class AlignedSwiGLUFFN(nn.Module):
    """silu(x W1) * (x W2) -> W3 with separate `w1` (gate), `w2` (value), `w3` (Meta's SwiGLUFFNAligned)."""

    def __init__(self, dim: int, hidden_features: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_features)
        self.w2 = nn.Linear(dim, hidden_features)
        self.w3 = nn.Linear(hidden_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))

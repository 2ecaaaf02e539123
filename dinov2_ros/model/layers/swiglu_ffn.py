"""The SwiGLU feed-forward of ViT-g, with the gate and value projections fused as in the checkpoints."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swiglu_hidden_features(dim: int, mlp_ratio: float = 4.0) -> int:
    """Hidden width DINOv2 uses: two thirds of the MLP width, rounded up to a multiple of 8 (4096 for g)."""
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


class SwiGLUFFN(nn.Module):
    """silu(x W1) * (x W2) -> W3, with W1 and W2 stacked in one `w12` linear (gate rows first)."""

    def __init__(self, dim: int, hidden_features: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden_features)
        self.w3 = nn.Linear(hidden_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)

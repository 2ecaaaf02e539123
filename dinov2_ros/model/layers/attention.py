"""Multi-head self-attention through `scaled_dot_product_attention`, so export sees one standard op."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Self-attention with one fused qkv projection (`attn.qkv`, `attn.proj` in the checkpoints); the
    backbones' qkv has a bias, the dino.txt head and text blocks' has none."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, is_causal: bool = False) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(
                f"embed_dim must be divisible by num_heads, got {dim} and {num_heads}; pick num_heads that "
                f"divides {dim} (DINOv2 uses head dim 64)"
            )
        self.num_heads = num_heads
        self.is_causal = is_causal  # each token attends to itself and the tokens before it (a text encoder)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))

"""Pre-norm transformer blocks: the backbone's and dino.txt vision head's (`Block`), and dino.txt's text
encoder's (`CausalAttentionBlock`), each with its checkpoint's submodule names."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dinov2_ros.model.layers.attention import Attention
from dinov2_ros.model.layers.layer_scale import LayerScale
from dinov2_ros.model.layers.mlp import Mlp
from dinov2_ros.model.layers.swiglu_ffn import (
    AlignedSwiGLUFFN,
    SwiGLUFFN,
    aligned_swiglu_hidden_features,
    swiglu_hidden_features,
)

LAYER_NORM_EPS = 1e-6  # the backbones' (Meta builds them with partial(nn.LayerNorm, eps=1e-6))
TORCH_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default: what dino.txt's head and text blocks were built with
BlockFfn = Literal["mlp", "swiglu", "swiglu_aligned"]


class Block(nn.Module):
    """x + ls1(attn(norm1(x))), then + ls2(mlp(norm2(x))); submodule names follow the checkpoints.

    `ffn` "mlp" (ViT-S/B/L), "swiglu" (ViT-g, fused `w12`) or "swiglu_aligned" (dino.txt's vision head:
    `w1`, `w2`, width aligned to 64). The backbones have a qkv bias and LayerNorm eps 1e-6; dino.txt's
    head blocks have neither bias nor that eps (`qkv_bias=False`, `norm_eps=1e-5`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn: BlockFfn = "mlp",
        mlp_ratio: float = 4.0,
        layerscale_init: float = 1.0,
        qkv_bias: bool = True,
        norm_eps: float = LAYER_NORM_EPS,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        if ffn == "mlp":
            self.mlp: nn.Module = Mlp(dim, int(dim * mlp_ratio))
        elif ffn == "swiglu":
            self.mlp = SwiGLUFFN(dim, swiglu_hidden_features(dim, mlp_ratio))
        elif ffn == "swiglu_aligned":
            self.mlp = AlignedSwiGLUFFN(dim, aligned_swiglu_hidden_features(dim, mlp_ratio))
        else:
            raise ValueError(f"ffn must be 'mlp', 'swiglu' or 'swiglu_aligned', got {ffn!r}")
        self.ls2 = LayerScale(dim, layerscale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class CausalAttentionBlock(nn.Module):
    """dino.txt's text block: x + attention(attention_norm(x)) with a causal mask, then
    + feed_forward(ffn_norm(x)); no layer scale (the released text encoder has none), qkv without bias."""

    def __init__(self, dim: int, num_heads: int, ffn_ratio: float = 4.0) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim, eps=TORCH_LAYER_NORM_EPS)
        self.attention = Attention(dim, num_heads, qkv_bias=False, is_causal=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=TORCH_LAYER_NORM_EPS)
        self.feed_forward = Mlp(dim, int(dim * ffn_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))

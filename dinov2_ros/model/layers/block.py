"""One pre-norm transformer block: attention and feed-forward residuals, each layer-scaled."""

from __future__ import annotations

import torch
from torch import nn

from dinov2_ros.model.layers.attention import Attention
from dinov2_ros.model.layers.layer_scale import LayerScale
from dinov2_ros.model.layers.mlp import Mlp
from dinov2_ros.model.layers.swiglu_ffn import SwiGLUFFN, swiglu_hidden_features
from dinov2_ros.weights.variants import FfnKind

LAYER_NORM_EPS = 1e-6


class Block(nn.Module):
    """x + ls1(attn(norm1(x))), then + ls2(mlp(norm2(x))); submodule names follow the checkpoints."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn: FfnKind = "mlp",
        mlp_ratio: float = 4.0,
        layerscale_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        if ffn == "mlp":
            self.mlp: nn.Module = Mlp(dim, int(dim * mlp_ratio))
        elif ffn == "swiglu":
            self.mlp = SwiGLUFFN(dim, swiglu_hidden_features(dim, mlp_ratio))
        else:
            raise ValueError(f"ffn must be 'mlp' or 'swiglu', got {ffn!r}")
        self.ls2 = LayerScale(dim, layerscale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

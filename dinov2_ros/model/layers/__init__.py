"""Transformer building blocks whose parameter names match Meta's released DINOv2 checkpoints."""

from dinov2_ros.model.layers.attention import Attention
from dinov2_ros.model.layers.block import Block, CausalAttentionBlock
from dinov2_ros.model.layers.layer_scale import LayerScale
from dinov2_ros.model.layers.mlp import Mlp
from dinov2_ros.model.layers.patch_embed import PatchEmbed
from dinov2_ros.model.layers.swiglu_ffn import AlignedSwiGLUFFN, SwiGLUFFN, swiglu_hidden_features

__all__ = [
    "AlignedSwiGLUFFN",
    "Attention",
    "Block",
    "CausalAttentionBlock",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "SwiGLUFFN",
    "swiglu_hidden_features",
]

"""Backbone + depth head as one module: image in, metric depth out (for export and benchmarks)."""

from __future__ import annotations

import torch
from torch import nn

from dinov2_ros.model.depth_head import LinearDepthHead, feature_channels
from dinov2_ros.model.vision_transformer import DinoVisionTransformer


class DepthEstimator(nn.Module):
    """Runs the backbone once for the head's taps, with the final norm the head was trained with."""

    def __init__(self, backbone: DinoVisionTransformer, head: LinearDepthHead) -> None:
        super().__init__()
        channels = feature_channels(backbone.embed_dim, len(head.tap_indices))
        if max(head.tap_indices) >= backbone.num_blocks or head.conv_depth.in_channels != channels:
            raise ValueError(
                f"the depth head (taps {list(head.tap_indices)}, {head.conv_depth.in_channels} channels) does "
                f"not fit a backbone with {backbone.num_blocks} blocks and embed_dim {backbone.embed_dim}; "
                "create both for the same variant"
            )
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, 1, H, W) depth in metres."""
        layers = self.backbone.get_intermediate_layers(x, self.head.tap_indices, norm=self.head.final_norm)
        return self.head(layers, (x.shape[-2], x.shape[-1]))

"""PyTorch modules (build time): DINOv2 backbones, depth and detection heads, checkpoint loading, and the
perception graph the exporter traces. Meta's files themselves (variants, download, identity) are in
`dinov2_ros.weights`, which needs no torch."""

from dinov2_ros.model.checkpoint import (
    CheckpointError,
    hf_to_official,
    load_backbone_state_dict,
    load_depth_head_state_dict,
    official_to_hf,
    read_checkpoint,
)
from dinov2_ros.model.factory import create_backbone, create_depth_head
from dinov2_ros.model.heads.depth import LinearDepthHead, normalise_bins
from dinov2_ros.model.pos_embed import interpolate_pos_embed
from dinov2_ros.model.vision_transformer import DinoVisionTransformer

__all__ = [
    "CheckpointError",
    "DinoVisionTransformer",
    "LinearDepthHead",
    "create_backbone",
    "create_depth_head",
    "hf_to_official",
    "interpolate_pos_embed",
    "load_backbone_state_dict",
    "load_depth_head_state_dict",
    "normalise_bins",
    "official_to_hf",
    "read_checkpoint",
]

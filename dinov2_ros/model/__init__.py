"""PyTorch modules only: DINOv2 backbones, depth and detection heads, checkpoints and weights. No ROS.

Names are imported on first use, so the weights registry (`dinov2-ros weights list`) loads without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "checkpoint": [
        "CheckpointError",
        "hf_to_official",
        "load_backbone_state_dict",
        "load_depth_head_state_dict",
        "official_to_hf",
        "read_checkpoint",
    ],
    "content_identity": ["encoder_name", "weights_identity"],
    "depth_head": ["LinearDepthHead", "normalise_bins"],
    "depth_model": ["DepthEstimator"],
    "factory": ["create_backbone", "create_depth_head"],
    "pos_embed": ["interpolate_pos_embed"],
    "random_weights": ["RANDOM_WEIGHTS_SEED", "RANDOM_WEIGHTS_TAG"],
    "variants": ["DEPTH_DATASETS", "VARIANTS", "BackboneVariant", "WeightFile", "get_variant"],
    "vision_transformer": ["DinoVisionTransformer"],
    "weights": [
        "REGISTRY",
        "Verification",
        "WeightsError",
        "fetch",
        "get_weight_file",
        "resolve_cache_dir",
        "verify_file",
    ],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> object:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return __all__

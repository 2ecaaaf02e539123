"""Seeded random dino.txt weights in the released layout, for our modules and (by URL) for Meta's builder."""

from __future__ import annotations

import torch
from official_dinotxt import SEEDS, random_state_dict

from dinov2_ros.model.dinotxt import DinoTxtVisionHead, TextEncoder
from dinov2_ros.model.vision_transformer import DinoVisionTransformer
from dinov2_ros.weights.variants import DINOTXT, get_variant

TEXT_PROMPTS = 6  # prompts whose text embeddings are compared (each costs 77 tokens through 24 layers)


def our_dinotxt_modules() -> dict[str, torch.nn.Module]:
    """Our backbone, vision head and text encoder at the released sizes (weights not loaded yet)."""
    variant = get_variant(DINOTXT.backbone)
    return {
        "backbone": DinoVisionTransformer.from_variant(variant),
        "vision head": DinoTxtVisionHead.from_release(DINOTXT, variant.embed_dim, variant.num_heads),
        "text encoder": TextEncoder(),
    }


def our_dinotxt_state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    """Every parameter of the three released files drawn at random (official_dinotxt.random_state_dict)."""
    return {name: random_state_dict(module, SEEDS[name]) for name, module in our_dinotxt_modules().items()}


def official_files(state_dicts: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    """The state_dicts by the URL each released file is downloaded from (our registry's URLs)."""
    return {
        get_variant(DINOTXT.backbone).checkpoint.url: state_dicts["backbone"],
        DINOTXT.vision_head.url: state_dicts["vision head"],
        DINOTXT.text_encoder.url: state_dicts["text encoder"],
    }

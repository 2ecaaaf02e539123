"""Shared fixtures for the model tests: tiny backbones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dinov2_ros.model import DinoVisionTransformer


def make_tiny_backbone(num_register_tokens: int = 0, ffn: str = "mlp", depth: int = 4) -> DinoVisionTransformer:
    """A 64-wide DINOv2 with the released models' structure, seeded so tests are reproducible."""
    torch.manual_seed(0)
    model = DinoVisionTransformer(64, depth, 2, ffn=ffn, num_register_tokens=num_register_tokens)
    model.init_weights()
    return model.eval()


@pytest.fixture
def tiny_backbone() -> DinoVisionTransformer:
    return make_tiny_backbone()


@pytest.fixture
def make_tiny() -> Callable[..., DinoVisionTransformer]:
    """The tiny-backbone builder, for tests that need several variants."""
    return make_tiny_backbone

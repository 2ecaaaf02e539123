"""PLACEHOLDER until the model layer's weights_identity lands."""

from __future__ import annotations

from pathlib import Path

from dinov2_ros.model.weights import sha256_of


def weights_identity(weights: str) -> str:
    if weights in ("random", "pretrained"):
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {weights} does not exist")
    return "sha256:" + sha256_of(path)

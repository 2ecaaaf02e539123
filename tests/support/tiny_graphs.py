"""Tiny perception graphs for the runtime tests: the real encoder and heads at toy sizes, and inputs."""

from __future__ import annotations

import numpy as np
import torch

from dinov2_ros.model import DinoVisionTransformer, LinearDepthHead
from dinov2_ros.model.heads.center import CenterHead
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.runtime.graph_spec import GraphSpec

TINY_DIM = 32
TINY_DEPTH = 2
TINY_CLASSES = 3
CAMERA = (60, 80)  # (height, width): 4:3 like a VGA camera, not a multiple of 14
TINY_INPUT = (56, 56)


def tiny_spec(**overrides) -> GraphSpec:
    fields = dict(
        variant="tiny",
        camera_height=CAMERA[0],
        camera_width=CAMERA[1],
        input_height=TINY_INPUT[0],
        input_width=TINY_INPUT[1],
        resize="stretch",
        heads=("depth", "exemplar"),
        top_k=5,
        max_prototypes=4,
        max_classes=TINY_CLASSES,
        embed_dim=TINY_DIM,
        features=True,
    )
    return GraphSpec(**(fields | overrides))


def tiny_graph(spec: GraphSpec, seed: int = 0) -> PerceptionGraph:
    """A 2-block, 32-dim DINOv2 encoder with random weights, the linear depth head, and the spec's heads."""
    torch.manual_seed(seed)
    backbone = DinoVisionTransformer(embed_dim=TINY_DIM, depth=TINY_DEPTH, num_heads=2, img_size=56)
    backbone.init_weights()
    with torch.no_grad():  # Meta's init makes near-constant features; widen them so outputs vary per pixel
        backbone.pos_embed.normal_(std=0.5)
        backbone.cls_token.normal_(std=0.5)
    depth_head = LinearDepthHead(TINY_DIM, (0, TINY_DEPTH - 1), 0.001, 10.0) if spec.depth else None
    detection_head = None
    if spec.detection == "exemplar":
        detection_head = ExemplarHead(max_classes=spec.max_classes, top_k=spec.top_k, similarity_threshold=0.2)
    elif spec.detection == "center":
        detection_head = CenterHead(TINY_DIM, num_classes=TINY_CLASSES, hidden_dim=16, top_k=spec.top_k)
    return PerceptionGraph(spec, backbone, depth_head, detection_head).eval()


def frames(kind: str, spec, batch: int = 2) -> np.ndarray:
    h, w = spec.camera_height, spec.camera_width
    if kind == "random":
        return np.random.default_rng(7).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    images = np.zeros((batch, h, w, 3), np.uint8)
    images[..., 0] = x * 255 // w
    images[..., 1] = 255 - y * 255 // h
    for index in range(batch):  # a bright square that moves between frames: an "object"
        top, left = 5 + 10 * index, 10 + 15 * index
        images[index, top : top + 20, left : left + 20] = (240, 30, 200)
    return images


def inputs_for(spec, images: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for `images`: every frame with the same prototypes (N, P, D), one slot empty."""
    inputs = {"images": images}
    if spec.exemplar:
        prototypes = np.random.default_rng(3).standard_normal((spec.max_prototypes, spec.embed_dim))
        prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
        classes = np.arange(spec.max_prototypes, dtype=np.int32)
        classes[-1] = -1  # an empty slot
        inputs["prototypes"] = np.repeat(prototypes.astype(np.float32)[None], len(images), axis=0)
        inputs["prototype_classes"] = np.repeat(classes[None], len(images), axis=0)
    return inputs

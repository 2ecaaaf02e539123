"""Tiny perception graphs for the runtime tests: the real encoder and heads at toy sizes, and inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from dinov2_ros.model import DinoVisionTransformer, LinearDepthHead
from dinov2_ros.model.dinotxt import DinoTxtVisionHead, TextEncoder, init_vision_head
from dinov2_ros.model.heads.center import CenterHead
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import ModelSettings

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


def tiny_settings(graph_dir, **values) -> ModelSettings:
    """ModelSettings selecting the tiny encoder's graphs (random weights, asked for) at TINY_INPUT in
    `graph_dir`, with `values` ({"model.depth_weights": "random", ...}) on top."""
    return ModelSettings.from_values(
        {
            "model.variant": "tiny",
            "model.weights": "random",
            "model.input_height": TINY_INPUT[0],
            "model.input_width": TINY_INPUT[1],
            "model.top_k": 5,
            "model.max_prototypes": 4,
            "model.max_classes": TINY_CLASSES,
            "model.graph_dir": str(graph_dir),
        }
        | values
    )


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
    vision_head = tiny_vision_head(seed) if spec.dinotxt else None
    return PerceptionGraph(spec, backbone, depth_head, detection_head, vision_head).eval()


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


# a BPE vocabulary in CLIP's format (header, then merges) small enough to write in a test
TINY_MERGES = ("h e", "l l", "he ll", "o </w>", "b l", "u e</w>", "bl ue</w>", "b o", "bo l", "t</w> </w>")
TINY_TEXT_VOCAB = 512 + len(TINY_MERGES) + 2  # bytes, word-final bytes, merges, start and end tokens


def write_tiny_vocabulary(path: Path) -> Path:
    path.write_bytes(gzip.compress(("#version: 0.2\n" + "\n".join(TINY_MERGES) + "\n").encode()))
    return path


def tiny_vision_head(seed: int = 0) -> DinoTxtVisionHead:
    """dino.txt's vision head at the tiny width, with layer scales that let its blocks change the tokens."""
    torch.manual_seed(seed)
    head = DinoTxtVisionHead(TINY_DIM, num_heads=2, num_blocks=2, layerscale_init=0.5)
    init_vision_head(head)
    return head.eval()


def tiny_text_encoder(seed: int = 0) -> TextEncoder:
    """dino.txt's text encoder at the tiny width, its embedding twice TINY_DIM (class half, patch half)."""
    torch.manual_seed(seed)
    encoder = TextEncoder(16, TINY_TEXT_VOCAB, 32, num_heads=2, num_layers=2, ffn_ratio=4.0, embed_dim=2 * TINY_DIM)
    encoder.init_weights()
    return encoder.eval()

"""Entry points: a backbone or depth head by variant name, with weights chosen explicitly.

`weights` is one of: "pretrained" (Meta's released file, fetched into the cache), a path to a
checkpoint (Meta or Hugging Face layout, loaded strictly), a state_dict, or "random" (explicit
random init for tests and benchmarks). There is no default: a model with silently random weights
produces plausible-looking garbage. "random" is one fixed network: it is built under
`random_weights.seeded()` (seed RANDOM_WEIGHTS_SEED), so every process gets the same weights and the
caller's RNG state is untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from dinov2_ros.model.checkpoint import (
    load_backbone_state_dict,
    load_depth_head_state_dict,
    load_dinotxt_state_dict,
    read_checkpoint,
)
from dinov2_ros.model.dinotxt import DinoTxtVisionHead, TextEncoder, init_vision_head
from dinov2_ros.model.heads.center import load_center_head
from dinov2_ros.model.heads.depth import LinearDepthHead
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.model.random_weights import seeded
from dinov2_ros.model.vision_transformer import DinoVisionTransformer
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.weights.cache import fetch
from dinov2_ros.weights.identity import encoder_name
from dinov2_ros.weights.variants import (
    DINOTXT,
    WeightFile,
    check_head_file_name,
    depth_range,
    dinotxt_text_encoder_beside,
    get_variant,
)

WeightsArg = str | os.PathLike[str] | Mapping[str, torch.Tensor] | None
_WEIGHTS_HELP = (
    "pass weights='pretrained' for Meta's released file, a checkpoint path, a state_dict, "
    "or weights='random' for explicit random weights (tests, benchmarks)"
)


def _resolve_state_dict(
    weights: WeightsArg, pretrained: Callable[[], WeightFile], cache_dir: str | os.PathLike[str] | None, what: str
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """(state_dict or None for random init, a description of the source for error messages)."""
    if weights is None:
        raise ValueError(f"no weights given for {what}; {_WEIGHTS_HELP}")
    if isinstance(weights, Mapping):
        return dict(weights), "state_dict"
    if weights == "random":
        return None, "random"
    if weights == "pretrained":
        path = fetch(pretrained(), cache_dir)
        return read_checkpoint(path), str(path)
    path = Path(weights)
    if not path.exists():
        raise ValueError(
            f"weights {str(weights)!r} is neither a file nor 'pretrained'/'random' for {what}; {_WEIGHTS_HELP}"
        )
    return read_checkpoint(path), str(path)


def create_backbone(
    name: str, weights: WeightsArg = None, *, cache_dir: str | os.PathLike[str] | None = None
) -> DinoVisionTransformer:
    """A DINOv2 backbone (`vits14` ... `vitg14_reg4`) in eval mode with the weights asked for."""
    variant = get_variant(name)
    state_dict, source = _resolve_state_dict(weights, lambda: variant.checkpoint, cache_dir, f"backbone {name}")
    if state_dict is None:
        with seeded():
            model = DinoVisionTransformer.from_variant(variant)
            model.init_weights()
    else:
        model = DinoVisionTransformer.from_variant(variant)
        load_backbone_state_dict(model, state_dict, source)
    return model.eval()


def create_depth_head(
    backbone_name: str,
    dataset: str = "nyu",
    kind: str = "linear4",
    weights: WeightsArg = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    final_norm: bool = False,
) -> LinearDepthHead:
    """Meta's linear/linear4 metric depth head for a backbone, trained on NYU or KITTI.

    The depth range defaults to the dataset's training range (NYU 0.001..10 m, KITTI 0.001..80 m), not
    the hub's 80 m; `final_norm=False` (un-normalised block outputs, as Meta's hub builder taps them) is
    what the released heads read. See depth_head.py for the evidence behind both choices.
    """
    variant = get_variant(backbone_name)
    taps = variant.depth_taps(kind)
    default_min, default_max = depth_range(dataset)
    with seeded():  # the conv's default init is the "random" head; loaded weights replace it
        head = LinearDepthHead(
            variant.embed_dim,
            taps,
            default_min if min_depth is None else min_depth,
            default_max if max_depth is None else max_depth,
            final_norm=final_norm,
            backbone_name=backbone_name,
        )
    if isinstance(weights, str | os.PathLike) and weights not in ("random", "pretrained"):
        check_head_file_name(Path(weights).name, backbone_name, dataset, kind)
    what = f"{backbone_name} {dataset} {kind} depth head"
    state_dict, source = _resolve_state_dict(weights, lambda: variant.depth_head_file(dataset, kind), cache_dir, what)
    if state_dict is not None:
        load_depth_head_state_dict(head, state_dict, source)
    return head.eval()


def create_dinotxt_vision_head(
    weights: WeightsArg = None, *, cache_dir: str | os.PathLike[str] | None = None
) -> DinoTxtVisionHead:
    """dino.txt's vision head for ViT-L/14 reg4 (`weights` as create_backbone takes them; a path is Meta's
    `..._vision_head.pth` or a file of the same layout)."""
    variant = get_variant(DINOTXT.backbone)
    with seeded():
        head = DinoTxtVisionHead.from_release(DINOTXT, variant.embed_dim, variant.num_heads)
        init_vision_head(head)
    what = "dino.txt vision head"
    state_dict, source = _resolve_state_dict(weights, lambda: DINOTXT.vision_head, cache_dir, what)
    if state_dict is not None:
        load_dinotxt_state_dict(head, state_dict, source, "vision head")
    return head.eval()


def create_text_encoder(weights: WeightsArg = None, *, cache_dir: str | os.PathLike[str] | None = None) -> TextEncoder:
    """dino.txt's text encoder. `weights` as create_dinotxt_vision_head takes them: for a vision head
    path, the text encoder is the file beside it named as Meta names it (`..._text_encoder.pth`)."""
    if isinstance(weights, str | os.PathLike) and weights not in ("random", "pretrained"):
        weights = dinotxt_text_encoder_beside(Path(weights))
    with seeded():
        encoder = TextEncoder()
        encoder.init_weights()
    state_dict, source = _resolve_state_dict(weights, lambda: DINOTXT.text_encoder, cache_dir, "dino.txt text encoder")
    if state_dict is not None:
        load_dinotxt_state_dict(encoder, state_dict, source, "text encoder")
    return encoder.eval()


def build_perception_graph(
    spec: GraphSpec,
    backbone_weights: WeightsArg,
    depth_weights: WeightsArg = None,
    depth_dataset: str = "nyu",
    depth_kind: str = "linear",
    detection_head: nn.Module | None = None,
    dinotxt_weights: WeightsArg = None,
) -> PerceptionGraph:
    """The PerceptionGraph for `spec` (weights as create_backbone, create_depth_head and
    create_dinotxt_vision_head take them; `dinotxt_weights` for a spec with dinotxt).

    The detection head, when the spec has one, is passed in built (its weights or prototypes decide it).
    """
    backbone = create_backbone(spec.variant, backbone_weights)
    depth_head = None
    if spec.depth:
        if depth_weights is None:
            raise ValueError("the spec has a depth head: pass depth_weights ('pretrained', a path or 'random')")
        depth_head = create_depth_head(spec.variant, depth_dataset, depth_kind, depth_weights)
    vision_head = None
    if spec.dinotxt:
        if spec.variant != DINOTXT.backbone:
            raise ValueError(f"dino.txt's vision head was trained on {DINOTXT.backbone}, not {spec.variant}")
        vision_head = create_dinotxt_vision_head(dinotxt_weights)
    return PerceptionGraph(spec, backbone, depth_head, detection_head, vision_head)


def perception_graph_for(settings: ModelSettings, spec: GraphSpec) -> tuple[PerceptionGraph, tuple[str, ...] | None]:
    """The PerceptionGraph the node's `settings` run for `spec`, and a trained head's class names (None
    for the exemplar head, whose classes are taught at run time)."""
    head, class_names = None, None
    if spec.exemplar:
        head = ExemplarHead(max_classes=spec.max_classes, top_k=spec.top_k)
    elif spec.detection == "center":
        head, class_names = center_head_for(settings, spec.top_k)
    graph = build_perception_graph(
        spec,
        settings.weights,
        settings.depth_weights or None,
        settings.depth_dataset,
        settings.depth_kind,
        head,
        settings.dinotxt_weights or None,
    )
    return graph, class_names


def center_head_for(settings: ModelSettings, top_k: int):
    """The trained centre head of `settings` (model.detector_weights) and its class names; refused when
    it was trained on another encoder, input size or resize mode (train-detector records them)."""
    head, info = load_center_head(
        Path(settings.detector_weights).expanduser(),
        encoder_name(settings.variant, settings.weights),
        (settings.input_height, settings.input_width),
        top_k=top_k,
        expected_resize=settings.resize,
    )
    return head, tuple(info.class_names)

"""Choose a backend by name, and assemble the PerceptionGraph for a GraphSpec from the model layer.

Backends are imported on demand, so picking ONNX Runtime never imports torch or TensorRT.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dinov2_ros.runtime.backend import Backend
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import BACKENDS

if TYPE_CHECKING:
    from torch import nn

    from dinov2_ros.runtime.perception_graph import PerceptionGraph


def create_backend(
    kind: str,
    spec: GraphSpec | None = None,
    *,
    onnx_path: str | os.PathLike | None = None,
    graph: PerceptionGraph | None = None,
    **options,
) -> Backend:
    """A ready backend: "tensorrt" and "onnxruntime" run `onnx_path`, "torch" runs `graph`.

    `spec`, when given, must equal the file's (or graph's) GraphSpec. `options` go to the backend's
    constructor (e.g. device, threads, precision, max_batch, cache_dir).
    """
    if kind not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {kind!r}")
    if kind == "torch":
        if graph is None:
            raise ValueError("the torch backend runs a PerceptionGraph: pass graph=build_perception_graph(...)")
        if spec is not None and graph.spec != spec:
            raise ValueError(f"graph is '{graph.spec.key}' but spec is '{spec.key}'; build the graph from this spec")
        from dinov2_ros.runtime.torch_backend import TorchBackend

        return TorchBackend(graph, **options)
    if onnx_path is None:
        raise ValueError(f"the {kind} backend runs an exported graph: pass onnx_path (see `dinov2-ros export`)")
    if kind == "onnxruntime":
        from dinov2_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, spec, **options)
    from dinov2_ros.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(onnx_path, spec, **options)


def build_perception_graph(
    spec: GraphSpec,
    backbone_weights,
    depth_weights=None,
    depth_dataset: str = "nyu",
    depth_kind: str = "linear",
    detection_head: nn.Module | None = None,
) -> PerceptionGraph:
    """The PerceptionGraph for `spec` from the model layer's factories (weights as they accept them).

    The detection head, when the spec has one, is passed in built (its weights or prototypes decide it).
    """
    from dinov2_ros.model import create_backbone, create_depth_head
    from dinov2_ros.runtime.perception_graph import PerceptionGraph

    backbone = create_backbone(spec.variant, backbone_weights)
    depth_head = None
    if spec.depth:
        if depth_weights is None:
            raise ValueError("the spec has a depth head: pass depth_weights ('pretrained', a path or 'random')")
        depth_head = create_depth_head(spec.variant, depth_dataset, depth_kind, depth_weights)
    return PerceptionGraph(spec, backbone, depth_head, detection_head)

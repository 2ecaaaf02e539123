"""The one Backend interface and its implementations: ONNX Runtime, TensorRT, PyTorch (and Triton, a
server's client, which BackendOpener opens by the model's name).

`create_backend(kind, ...)` picks one by name; each runtime (onnxruntime, tensorrt, torch) is imported
only for the kind asked for, as Polygraphy imports its backends, so picking ONNX Runtime never
imports TensorRT or torch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dinov2_ros.runtime.backends.base import Backend
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import BACKENDS

if TYPE_CHECKING:
    from dinov2_ros.model.perception_graph import PerceptionGraph


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
    constructor: device, threads (onnxruntime); device, precision (torch); precision, max_batch,
    cache_dir (tensorrt, whose engine must be built: `export.engine_build.build_engine`). Each
    runtime is imported here for the kind asked for only, so the package imports on any machine.
    """
    if kind not in BACKENDS or kind == "triton":
        raise ValueError(
            f"backend must be one of {tuple(k for k in BACKENDS if k != 'triton')}, got {kind!r} (a Triton model is "
            "opened by name: runtime.backends.triton_backend.TritonBackend)"
        )
    if kind == "torch":
        if graph is None:
            raise ValueError("the torch backend runs a PerceptionGraph: pass graph=build_perception_graph(...)")
        if spec is not None and graph.spec != spec:
            raise ValueError(f"graph is '{graph.spec.key}' but spec is '{spec.key}'; build the graph from this spec")
        from dinov2_ros.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(graph, **options)
    if onnx_path is None:
        raise ValueError(f"the {kind} backend runs an exported graph: pass onnx_path (see `dinov2-ros export`)")
    if kind == "onnxruntime":
        from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, spec, **options)
    from dinov2_ros.runtime.backends.tensorrt.loader import EngineLoader
    from dinov2_ros.runtime.backends.tensorrt.runner import TensorRTRunner

    return TensorRTRunner(EngineLoader(onnx_path, spec, **options))

"""What stays fp32 in an fp16 TensorRT engine, and the mixed-precision (fp16) copy of an exported graph
for strongly typed TensorRT networks.

`fp32_nodes(model)` is the one set both fp16 routes keep in fp32: the strongly typed route (TensorRT
10.12 and later) builds from `fp16_graph`, which keeps those nodes fp32 with Casts around them; the
weakly typed route (TensorRT 10.0 .. 10.11, JetPack's 10.3) pins the layers TensorRT's parser makes
from them (engine_build.py). The set:
- LayerNormalization, Softmax and the reductions (their sums of squares and exponentials: statistics
  that lose range or precision in fp16);
- everything downstream of the depth head's bin conv: the bin normalisation (`normalise_bins` in
  model/heads/depth.py: ReLU, +0.1, divide by the sum), the bin-weighted depth sum, the resizes to
  the camera, so depth keeps fp32 resolution over its whole range;
- the detection head and everything downstream of it: the prototype and feature normalisation and
  their cosines, the scores, the masks and the box arithmetic up to camera pixels (in fp16 a box
  coordinate moves in 0.5 px steps between 512 and 1024 px). The head is a few hundred small
  operations beside the encoder's, so keeping it fp32 costs little.
Heads are found by the module scope torch.onnx records in each node's metadata (`detection_head`,
`depth_head`: the attributes of model/perception_graph.py).

The conversion is onnxruntime's maintained `onnxruntime.transformers.float16.convert_float_to_float16`
with `keep_io_types`, so inputs and outputs keep the GraphSpec's dtypes (uint8 and int32 in, fp32 and
int32 out), and its DEFAULT_OP_BLOCK_LIST (TopK, Min, Max, ...: ops without fp16 CPU kernels) also
stays fp32, so the copy runs in ONNX Runtime on the CPU, where the tests compare it with the fp32
graph. The copy is then made a valid ONNX model (the converter appends its Casts after their readers
and marks some fp32 initializers FLOAT16 in value_info): `onnx.checker.check_model(full_check=True)`
passes, for Polygraphy, ONNX Runtime's optimisers and a user's inspection.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import ModelProto

    from dinov2_ros.runtime.graph_spec import GraphSpec

FP32_OPS = ("LayerNormalization", "Softmax", "ReduceSum", "ReduceMean", "ReduceL2", "ReduceSumSquare")
DEPTH_BIN_CONV_SCOPE = "depth_head"  # PerceptionGraph.depth_head: its Convs are the bin conv (split) and the bin sums
DETECTION_HEAD_SCOPE = "detection_head"  # PerceptionGraph.detection_head
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def fp32_nodes(model: ModelProto, spec: GraphSpec) -> list[str]:
    """Names of the nodes of `model` that the fp16 routes keep in fp32 (see the module docstring), in
    graph order. ValueError when `spec` says there is a depth or detection head that the module scopes
    do not show (a file not written by `dinov2-ros export`)."""
    nodes = list(model.graph.node)
    bin_convs = [node for node in nodes if node.op_type == "Conv" and DEPTH_BIN_CONV_SCOPE in name_scopes(node)]
    detection = [node for node in nodes if DETECTION_HEAD_SCOPE in name_scopes(node)]
    for present, nodes_found, scope in (
        (spec.depth, bin_convs, DEPTH_BIN_CONV_SCOPE),
        (spec.detection, detection, DETECTION_HEAD_SCOPE),
    ):
        if present and not nodes_found:
            raise ValueError(
                f"the graph has a {scope.replace('_', ' ')} but no node in module scope '{scope}' (torch.onnx's "
                f"'{NAME_SCOPES_KEY}' node metadata), so it cannot be kept in fp32; re-export it with "
                "`dinov2-ros export`"
            )
    kept = {node.name for node in nodes if node.op_type in FP32_OPS} | {node.name for node in detection}
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    pending = deque(output for node in (*bin_convs, *detection) for output in node.output)
    while pending:
        for node in consumers.get(pending.popleft(), []):
            if node.name not in kept:
                kept.add(node.name)
                pending.extend(node.output)
    return [node.name for node in nodes if node.name in kept]


def fp16_graph(model: ModelProto, spec: GraphSpec, path: str | os.PathLike | None = None) -> ModelProto:
    """A valid mixed-precision copy of the fp32 exported `model` of `spec`: fp16 but for `fp32_nodes`.
    `path`, the file `model` was loaded from, is converted instead where given: the converter's shape
    inference then reads the file, which takes graphs over 2 GiB (vitg14's) where a model in memory cannot."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    mixed = convert_float_to_float16(
        model if path is None else str(path),
        keep_io_types=True,
        op_block_list=sorted({*DEFAULT_OP_BLOCK_LIST, *FP32_OPS}),
        node_block_list=fp32_nodes(model, spec),
    )
    _sort_topologically(mixed.graph)
    _value_info_of_initializers_as_stored(mixed.graph)
    return mixed


def _sort_topologically(graph) -> None:
    """Order `graph`'s nodes so each comes after the producers of its inputs, otherwise keeping their
    order (ONNX requires it; the converter appends the Casts around the fp32-kept nodes at the end).
    Kahn's algorithm: linear in the nodes, for the 10,000-node graphs of the large encoders."""
    nodes = list(graph.node)
    produced = {name for node in nodes for name in node.output}
    waiting = [sum(1 for name in set(node.input) if name in produced) for node in nodes]
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in set(node.input):
            if name in produced:
                consumers.setdefault(name, []).append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        index = heapq.heappop(ready)
        ordered.append(nodes[index])
        for name in nodes[index].output:
            for consumer in consumers.get(name, ()):
                waiting[consumer] -= 1
                if waiting[consumer] == 0:
                    heapq.heappush(ready, consumer)
    if len(ordered) != len(nodes):
        raise ValueError(f"the fp16 graph has a cycle: {len(nodes) - len(ordered)} nodes wait on each other")
    del graph.node[:]
    graph.node.extend(ordered)


def _value_info_of_initializers_as_stored(graph) -> None:
    """value_info entries of initializers get the type the initializer has (the converter marks some
    FLOAT16 that it left FLOAT, where a blocked node reads them)."""
    stored = {tensor.name: tensor.data_type for tensor in graph.initializer}
    for value in graph.value_info:
        if value.name in stored:
            value.type.tensor_type.elem_type = stored[value.name]


def name_scopes(node) -> str:
    """The torch module scopes torch.onnx recorded for `node` ('' for a node written otherwise)."""
    return next((prop.value for prop in node.metadata_props if prop.key == NAME_SCOPES_KEY), "")

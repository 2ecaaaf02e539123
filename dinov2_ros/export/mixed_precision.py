"""The mixed-precision (fp16) copy of an exported graph, for strongly typed TensorRT networks.

TensorRT removed weak typing (`BuilderFlag.FP16`, per-layer precision) in 11.0 and deprecated it in
10.12; a strongly typed network runs every layer in the type its ONNX graph gives it (NVIDIA's
"Migrating from TensorRT 10.x to 11.x": convert the ONNX model to mixed precision before building).
The conversion is onnxruntime's maintained `onnxruntime.transformers.float16.convert_float_to_float16`
with `keep_io_types`, so inputs and outputs keep the GraphSpec's dtypes (uint8 and int32 in, fp32 and
int32 out). Kept in fp32, with Casts around them:
- LayerNormalization, Softmax and the reductions (their sums of squares and exponentials: statistics
  that lose range or precision in fp16);
- everything downstream of the depth head's bin conv: the bin normalisation (`normalise_bins` in
  model/heads/depth.py: ReLU, +0.1, divide by the sum), the bin-weighted depth sum, the resizes to
  the camera, so depth keeps fp32 resolution over its whole range;
- onnxruntime's DEFAULT_OP_BLOCK_LIST (TopK, Min, Max, ...: ops without fp16 CPU kernels), so the
  converted graph also runs in ONNX Runtime on the CPU, where the tests compare it with the fp32 graph.
The depth head's nodes are found by the module scope torch.onnx records in each node's metadata.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import ModelProto

FP32_OPS = ("LayerNormalization", "Softmax", "ReduceSum", "ReduceMean", "ReduceL2", "ReduceSumSquare")
DEPTH_BIN_CONV_SCOPE = "depth_head"  # PerceptionGraph.depth_head: its Convs are the bin conv (split) and the bin sums
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def depth_bin_nodes(model: ModelProto) -> list[str]:
    """Names of the nodes that read, directly or not, the depth head's bin conv output; [] without depth head."""
    nodes = list(model.graph.node)
    convs = [node for node in nodes if node.op_type == "Conv" and DEPTH_BIN_CONV_SCOPE in _scopes(node)]
    if not convs:
        return []
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    downstream: dict[str, None] = {}
    pending = deque(output for conv in convs for output in conv.output)
    while pending:
        for node in consumers.get(pending.popleft(), []):
            if node.name not in downstream:
                downstream[node.name] = None
                pending.extend(node.output)
    return list(downstream)


def fp16_graph(model: ModelProto, has_depth: bool) -> ModelProto:
    """A mixed-precision copy of the fp32 exported `model` (see the module docstring for what stays fp32).

    `has_depth` is the GraphSpec's: ValueError when it says the graph has a depth head that cannot be
    found by its torch.onnx module scope (a file not written by `dinov2-ros export`).
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    depth_nodes = depth_bin_nodes(model)
    if has_depth and not depth_nodes:
        raise ValueError(
            f"the graph has a depth head but no Conv in module scope '{DEPTH_BIN_CONV_SCOPE}' (torch.onnx's "
            f"'{NAME_SCOPES_KEY}' node metadata), so its bins cannot be kept in fp32; re-export it with "
            "`dinov2-ros export`"
        )
    return convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=sorted({*DEFAULT_OP_BLOCK_LIST, *FP32_OPS}),
        node_block_list=depth_nodes,
    )


def _scopes(node) -> str:
    return next((prop.value for prop in node.metadata_props if prop.key == NAME_SCOPES_KEY), "")

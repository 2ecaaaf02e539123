"""A rewrite of the exported ONNX graph for TensorRT: every shape of a uint8 input is read after its Cast.

TensorRT lets a uint8 network input feed only a Cast (onnx-tensorrt docs/operators.md: "UINT8 is only
supported as network input or output tensor types"; its parser has no uint8 Shape). torch's exporter
reads the dynamic batch size with `Shape(images)`, because a symbolic size is bound to the graph input
it first appears on. A Cast keeps the shape, so each such Shape (or Size) node is pointed at the Cast's
output instead; the values computed are unchanged.
"""

from __future__ import annotations

from onnx import ModelProto, NodeProto, TensorProto

SHAPE_OPS = ("Shape", "Size")


def read_shapes_after_cast(model: ModelProto) -> int:
    """Rewire `Shape`/`Size` nodes on uint8 graph inputs to the input's Cast, in place; returns how many.

    The Cast is moved to the front of the node list (it reads only a graph input), so the graph stays
    topologically sorted. ValueError when a uint8 input that feeds a Shape has no Cast to read from.
    """
    graph = model.graph
    rewired = 0
    for graph_input in graph.input:
        if graph_input.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        name = graph_input.name
        shapes = [node for node in graph.node if node.op_type in SHAPE_OPS and name in node.input]
        if not shapes:
            continue
        cast = next((node for node in graph.node if node.op_type == "Cast" and list(node.input) == [name]), None)
        if cast is None:
            raise ValueError(
                f"uint8 graph input '{name}' feeds {[node.name for node in shapes]} but no Cast: TensorRT "
                "accepts a uint8 input only as a Cast's input; cast it first in the model's forward"
            )
        for node in shapes:
            node.input[0] = cast.output[0]
        nodes = [_copy(cast), *(_copy(node) for node in graph.node if node is not cast)]
        del graph.node[:]
        graph.node.extend(nodes)
        rewired += len(shapes)
    return rewired


def _copy(node: NodeProto) -> NodeProto:
    copy = NodeProto()
    copy.CopyFrom(node)
    return copy

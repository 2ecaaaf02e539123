"""Which ONNX graphs a TensorRT version's ONNX parser takes: its documented restrictions, checked before parsing.

`graph_violations(model, version)` lists every node or input of `model` that breaks a restriction of
that TensorRT version, so `build_serialized_engine` can refuse with our message instead of a parser
error. No torch, no ROS, no TensorRT needed. Sources (onnx-tensorrt `docs/operators.md` per release
branch, and NVIDIA's TensorRT documentation):
- Opset ceiling: release/8.6-GA "TensorRT 8.6 supports operators up to Opset 17"; release/10.0-GA and
  10.1-GA "opset 9 to opset 20"; the 10.15 table "opset 9 to opset 24"; TensorRT 11.x ONNX Opset Guide
  (docs.nvidia.com/deeplearning/tensorrt/latest/reference/onnx-opset-guide.html) "Maximum opset 25".
  A release between two documented ones gets the earlier ceiling (conservative).
- Operators: the "Y" rows of release/8.6-GA's table for 8.x and of release/10.1-GA's for 10.x and
  11.x (later tables only add operators, e.g. Attention, RMSNormalization in 10.15: conservative).
- uint8: "UINT8 is only supported as network input or output tensor types" (10.x tables); a uint8
  input may only feed a Cast (TensorRT's parser has no uint8 Shape or other layer).
- TopK: "`K` input must be less than 3840" (release/10.1-GA .. 10.15 tables); TensorRT 8.6's TopK
  operator page (docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-860-ea/operators/docs/TopK.html)
  "k <= 1024". K must be a constant ("`K` input must be an initializer", 8.x tables).
- Reduce* `axes`: opset 18 moved it from an attribute to an input; TensorRT 8.6's Reduce importers
  ignore that input, and 10.x require it to be an initializer ("`axes` must be an initializer").
- Resize: "Antialiasing is not supported" (10.x tables).
- QuantizeLinear / DequantizeLinear (explicit quantisation, the TensorRT 10 Developer Guide's "Working
  with Quantized Types"): int8 only among the 8-bit integer types (no uint8), symmetric ("the
  zero-point must be 0"), scale and zero point constants, per-channel scales on weights (a constant
  data input) only, activations per tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dinov2_ros.runtime.backends.tensorrt.loader import parse_version

if TYPE_CHECKING:
    from onnx import ModelProto

# operators.md "Y" rows: onnx-tensorrt release/8.6-GA
_OPS_8_6 = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Identity If
ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign
Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
"""
# the same, release/10.1-GA
_OPS_10_1 = _OPS_8_6 + " CastLike DeformConv Gelu Hardmax Mish"

TOPK_MAX_K_8 = 1024
TOPK_MAX_K_10 = 3839  # "less than 3840"


def max_opset(version: str) -> int:
    """The highest ONNX opset TensorRT `version`'s parser is documented to import."""
    major, minor = parse_version(version)
    if major < 10:
        return 17
    if major == 10:
        return 24 if minor >= 15 else 20
    return 25


def supported_ops(version: str) -> frozenset[str]:
    """ai.onnx operators TensorRT `version`'s parser supports (see the module docstring for the tables)."""
    return frozenset((_OPS_8_6 if parse_version(version)[0] < 10 else _OPS_10_1).split())


def max_topk(version: str) -> int:
    """The largest TopK K that TensorRT `version` builds."""
    return TOPK_MAX_K_8 if parse_version(version)[0] < 10 else TOPK_MAX_K_10


def graph_violations(model: ModelProto, version: str) -> list[str]:
    """Every documented restriction of TensorRT `version` that `model` breaks, one line each; [] if none."""
    from onnx import TensorProto

    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    constants |= {
        node.output[0]: attribute.t
        for node in graph.node
        if node.op_type == "Constant"
        for attribute in node.attribute
        if attribute.name == "value"
    }
    found = []
    opset = max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0)
    if opset > max_opset(version):
        found.append(f"opset {opset}: TensorRT {version} parses ONNX opsets up to {max_opset(version)}")
    found += _uint8_inputs(graph, TensorProto.UINT8)
    supported = supported_ops(version)
    eight = parse_version(version)[0] < 10
    for node in graph.node:
        where = f"{node.op_type} node '{node.name}'"
        if node.domain not in ("", "ai.onnx"):
            found.append(f"{where}: domain '{node.domain}' is not ONNX's; TensorRT {version} needs a plugin for it")
        elif node.op_type not in supported:
            found.append(f"{where}: operator not supported by TensorRT {version}'s ONNX parser")
        if node.op_type.startswith("Reduce") and len(node.input) > 1 and node.input[1]:
            if eight:
                found.append(f"{where}: `axes` is an input (opset 18), which TensorRT {version} ignores")
            elif node.input[1] not in constants:
                found.append(f"{where}: `axes` must be an initializer or Constant")
        if node.op_type == "TopK":
            found += _topk(node, where, constants, version)
        if node.op_type == "Resize" and _attribute(node, "antialias", 0):
            found.append(f"{where}: antialiased Resize is not supported by TensorRT")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            found += _quantize_dequantize(node, where, constants)
    return found


def _quantize_dequantize(node, where: str, constants: dict) -> list[str]:
    """What TensorRT's explicit quantisation refuses in one Q or DQ node (see the module docstring)."""
    from onnx import TensorProto, numpy_helper

    found = []
    scale = constants.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        return [f"{where}: the scale must be an initializer or Constant"]
    zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and zero_point is None:
        found.append(f"{where}: the zero point must be an initializer or Constant")
    if zero_point is None and not (len(node.input) > 2 and node.input[2]):
        found.append(f"{where}: no zero point means uint8; TensorRT quantises to int8 with zero point 0")
    elif zero_point is not None:
        if zero_point.data_type != TensorProto.INT8:
            name = TensorProto.DataType.Name(zero_point.data_type)
            found.append(f"{where}: {name} quantisation; TensorRT takes int8 (zero point 0)")
        elif np.any(numpy_helper.to_array(zero_point)):
            found.append(f"{where}: non-zero zero point; TensorRT takes symmetric quantisation only")
    if int(np.prod(scale.dims)) > 1 and node.input[0] not in constants:
        found.append(f"{where}: per-channel scales on an activation; TensorRT quantises activations per tensor")
    return found


def _uint8_inputs(graph, uint8: int) -> list[str]:
    found = []
    for graph_input in graph.input:
        if graph_input.type.tensor_type.elem_type != uint8:
            continue
        for node in graph.node:
            if graph_input.name in node.input and node.op_type != "Cast":
                found.append(
                    f"{node.op_type} node '{node.name}' reads uint8 input '{graph_input.name}': "
                    "a uint8 network input may only feed a Cast"
                )
    return found


def _topk(node, where: str, constants: dict, version: str) -> list[str]:
    if len(node.input) < 2 or node.input[1] not in constants:
        return [f"{where}: `K` must be an initializer or Constant"]
    from onnx import numpy_helper

    k = int(np.asarray(numpy_helper.to_array(constants[node.input[1]])).reshape(-1)[0])
    if k > max_topk(version):
        return [f"{where}: K={k}, TensorRT {version} takes K <= {max_topk(version)}"]
    return []


def _attribute(node, name: str, default):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)

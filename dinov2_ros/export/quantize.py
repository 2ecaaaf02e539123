"""Dynamic int8 quantisation of an exported graph's MatMuls, for ONNX Runtime on CPU.

Only MatMuls with a constant weight are quantised: the encoder's linear layers (qkv, proj, fc1, fc2),
which carry most of its work. Weights are int8 per output channel; activations are quantised per
call. The GraphSpec metadata is kept, with the precision set to int8. What stays fp32, and why
(vits14, random weights, measured here with benchmarks/bench_int8.py and one-off variants of it):
- the patch-embedding Conv: quantising it multiplies the error for no gain;
- attention's two activation-by-activation MatMuls (QK^T, AV): quantised as well
  (`MatMulConstBOnly=False`) the encoder ran slower (1.28x fp32 instead of 1.47x at 448x448,
  interleaved) with the same patch cosine (0.999695);
- LayerNorm, Softmax, GELU, and the heads: the depth head's Conv, Gemm and upsampling MatMuls (their
  constant is the first input, not the weight), and the exemplar head's MatMul, whose prototypes are
  a graph input;
- no layer of the encoder is kept fp32 for accuracy: the error is spread evenly (patch cosine to fp32
  at 224x224: 0.99971 all quantised; 0.99982 with every fc2, 0.99982 with every fc1, 0.99983 with
  blocks 0-1 left fp32), so reaching 0.9999 would cost most of the speed-up.
ONNX Runtime's default op list is not used: it can rewrite fused attention into an invalid node.
MatMulNBits (8-bit weights in blocks of 32, int8 compute) keeps more (cosine 0.99987) but ran slower
than fp32 here (0.89x at 448x448).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from dinov2_ros.export.camera_graph import graph_digest, load_core, quiet_onnx_tools, save_model_atomic, set_metadata
from dinov2_ros.runtime.graph_file import CORE_DIGEST_KEY, CORE_SPEC_KEY, PRECISION_KEY, SPEC_KEY, load_graph_metadata

LOG = logging.getLogger(__name__)


def quantize_graph(onnx_path: str | os.PathLike, output_path: str | os.PathLike, key: str = SPEC_KEY) -> Path:
    """Write an int8 copy of the exported fp32 graph at `onnx_path` to `output_path`; returns it.

    `key=graph_file.CORE_SPEC_KEY` quantises a stored core, which every camera's int8 graph is then
    composed from (the ends hold no MatMul, so that equals quantising each camera's graph).
    """
    import onnx

    onnx_path, output_path = Path(onnx_path), Path(output_path)
    if onnx_path.resolve() == output_path.resolve():
        raise ValueError(f"output_path must differ from the fp32 input {onnx_path}; e.g. {onnx_path.stem}.int8.onnx")
    if key == CORE_SPEC_KEY:
        load_core(onnx_path)  # a damaged core must not be quantised into an int8 core that checks out
    spec, metadata = load_graph_metadata(onnx_path, key=key)
    LOG.info("quantising the MatMuls of %s to int8 ...", spec.key if key == SPEC_KEY else spec.core_key)
    with tempfile.TemporaryDirectory(dir=output_path.parent) as scratch:
        quantized = quantize_matmuls(onnx_path, Path(scratch) / "quantized.onnx")
        model = onnx.load_model(quantized)
    metadata[PRECISION_KEY] = "int8"
    if key == CORE_SPEC_KEY:
        metadata[CORE_DIGEST_KEY] = graph_digest(model)
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    save_model_atomic(model, output_path)
    return output_path


def quantize_matmuls(onnx_path: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """ONNX Runtime's dynamic quantisation of the MatMuls alone (int8 weights per output channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_onnx_tools():
        quantize_dynamic(
            onnx_path,
            output_path,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )
    return Path(output_path)

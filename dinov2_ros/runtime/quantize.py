"""Dynamic int8 quantisation of an exported graph's MatMuls, for ONNX Runtime on CPU.

Only MatMul is quantised: the encoder's linear layers carry almost all the work, while quantising the
patch-embedding Conv multiplies the error for no gain, and ONNX Runtime's default op list can rewrite
fused attention into an invalid node. Weights are int8 per output channel; activations are quantised
per call. The GraphSpec metadata is kept, with the precision set to int8.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from dinov2_ros.runtime.onnx_export import (
    PRECISION_KEY,
    load_graph_metadata,
    quiet_onnx_tools,
    save_model_atomic,
    set_metadata,
)

LOG = logging.getLogger(__name__)


def quantize_graph(onnx_path: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Write an int8 copy of the exported fp32 graph at `onnx_path` to `output_path`; returns it."""
    import onnx

    onnx_path, output_path = Path(onnx_path), Path(output_path)
    if onnx_path.resolve() == output_path.resolve():
        raise ValueError(f"output_path must differ from the fp32 input {onnx_path}; e.g. {onnx_path.stem}.int8.onnx")
    spec, metadata = load_graph_metadata(onnx_path)
    LOG.info("quantising the MatMuls of %s to int8 ...", spec.key)
    with tempfile.TemporaryDirectory(dir=output_path.parent) as scratch:
        quantized = quantize_matmuls(onnx_path, Path(scratch) / "quantized.onnx")
        model = onnx.load_model(quantized)
    set_metadata(model, {**metadata, PRECISION_KEY: "int8"})
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

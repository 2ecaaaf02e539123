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

`quantize_qdq` makes the other int8 graph: calibrated, with explicit QuantizeLinear/DequantizeLinear
pairs, the form TensorRT 10 builds int8 from (explicit quantisation; its implicit, calibrator-based
int8 is deprecated) and ONNX Runtime also runs. ONNX Runtime's `quantize_static` (QDQ format) makes it,
chosen over NVIDIA's modelopt because it is already a dependency and its output is plain ONNX with
what TensorRT requires: symmetric int8 (zero points 0), weights per output channel, activations per
tensor. Quantised are the encoder's weight MatMuls except fc2 (its input, after GELU, is long-tailed:
per-tensor scales cost patch cosine 0.99937 -> 0.99973 with it left out, vits14 at 224); left in
floating point is `mixed_precision.fp32_nodes` (LayerNorm, Softmax, the heads and their boxes). On the
CPU the dynamic graph stays ONNX Runtime's int8: faster and closer to fp32 there (benchmarks/bench_int8.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from dinov2_ros.export.camera_graph import (
    example_inputs,
    graph_digest,
    load_core,
    quiet_onnx_tools,
    save_model_atomic,
    set_metadata,
)
from dinov2_ros.export.mixed_precision import fp32_nodes, name_scopes
from dinov2_ros.runtime.graph_file import (
    CALIBRATION_KEY,
    CORE_DIGEST_KEY,
    CORE_SPEC_KEY,
    PRECISION_KEY,
    QDQ_PRECISION,
    SPEC_KEY,
    external_data_path,
    load_graph_metadata,
)

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
        return _save_quantized(onnx.load_model(quantized), metadata, "int8", key, output_path)


def _save_quantized(model, metadata: dict[str, str], precision: str, key: str, output_path: Path) -> Path:
    """Write a quantised copy with its source's metadata (precision set, a core's digest renewed), checked."""
    import onnx

    metadata[PRECISION_KEY] = precision
    if key == CORE_SPEC_KEY:
        metadata[CORE_DIGEST_KEY] = graph_digest(model)
    set_metadata(model, metadata)
    save_model_atomic(model, output_path, lambda written: onnx.checker.check_model(str(written)))
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
            use_external_data_format=external_data_path(onnx_path).is_file(),
        )
    return Path(output_path)


def quantize_qdq(
    onnx_path: str | os.PathLike,
    output_path: str | os.PathLike,
    images: Sequence[np.ndarray],
    key: str = SPEC_KEY,
    calibration: str = "",
) -> Path:
    """Write the calibrated Q/DQ int8 copy of the exported fp32 graph (or, with `key=CORE_SPEC_KEY`,
    core) at `onnx_path` to `output_path`; returns it. `images`, (H, W, 3) uint8 RGB frames of any
    sizes, calibrate the activation scales (through the graph's own preprocessing, stretched to its
    input); a few dozen frames like the cell's are enough. `calibration` names them in the metadata
    (CALIBRATION_KEY), so a graph calibrated on other frames is told apart. ValueError without frames."""
    import onnx

    onnx_path, output_path = Path(onnx_path), Path(output_path)
    if onnx_path.resolve() == output_path.resolve():
        raise ValueError(f"output_path must differ from the fp32 input {onnx_path}")
    if not len(images) or any(image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 for image in images):
        found = [f"{image.dtype} {image.shape}" for image in images[:3]]
        raise ValueError(f"calibration needs at least one (H, W, 3) uint8 RGB image, got {len(images)}: {found}")
    spec, metadata = load_graph_metadata(onnx_path, key=key)
    model = onnx.load(onnx_path, load_external_data=False)  # its nodes and inputs, not its weights
    feeds = calibration_feeds(model, spec, images)
    LOG.info(
        "calibrating int8 Q/DQ of %s on %d frames ...", spec.key if key == SPEC_KEY else spec.core_key, len(images)
    )
    with tempfile.TemporaryDirectory(dir=output_path.parent) as scratch:
        quantized = quantize_matmuls_qdq(onnx_path, Path(scratch) / "qdq.onnx", feeds, fp32_nodes(model, spec), model)
        metadata[CALIBRATION_KEY] = calibration
        return _save_quantized(onnx.load_model(quantized), metadata, QDQ_PRECISION, key, output_path)


def quantize_matmuls_qdq(
    onnx_path: str | os.PathLike,
    output_path: str | os.PathLike,
    feeds: list[dict[str, np.ndarray]],
    keep_float: Sequence[str] = (),
    model=None,
) -> Path:
    """ONNX Runtime's static Q/DQ quantisation of the MatMuls with a constant weight, but fc2 and the
    nodes `keep_float`, calibrated (min-max) on `feeds`: symmetric int8, weights per output channel,
    activations per tensor. `model` is the file's ModelProto where the caller has it loaded."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if model is None:
        model = onnx.load(onnx_path, load_external_data=False)
    weights, kept = {tensor.name for tensor in model.graph.initializer}, set(keep_float)
    chosen = [  # named, not excluded: ONNX Runtime's static route also takes activation-by-activation MatMuls
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and node.input[1] in weights
        and node.name not in kept
        and _FC2_SCOPE not in name_scopes(node)
    ]
    with quiet_onnx_tools():
        quantize_static(
            onnx_path,
            output_path,
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=chosen,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            use_external_data_format=external_data_path(onnx_path).is_file(),
        )
    return Path(output_path)


def calibration_feeds(model, spec, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """One input dict per frame for `model` (a camera graph: uint8 `images` at the camera size; a core:
    normalised `model_input`), with the export check's random unit prototypes (the exemplar head is
    not quantised, so they only need to be valid inputs)."""
    names = {graph_input.name for graph_input in model.graph.input}
    extra = {name: value for name, value in example_inputs(spec, batch=1).items() if name.startswith("prototype")}
    mean, std = (np.asarray(values, np.float32) for values in spec.normalisation)
    feeds = []
    for image in images:
        if "images" in names:
            resized = cv2.resize(image, (spec.camera_width, spec.camera_height), interpolation=cv2.INTER_AREA)
            feeds.append({"images": resized[None], **extra})
        else:
            resized = cv2.resize(image, (spec.input_width, spec.input_height), interpolation=cv2.INTER_AREA)
            normalised = ((resized.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)[None]
            feeds.append({"model_input": np.ascontiguousarray(normalised), **extra})
    return feeds


_FC2_SCOPE = "mlp.fc2"


class _Feeds:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

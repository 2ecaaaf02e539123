"""TensorRT backend on a real GPU: parity with ONNX Runtime, engine reuse, input checks.

Runs only where `tensorrt` and cuda-python import and a CUDA GPU is present; skipped with that
reason elsewhere. Thresholds against fp32 ONNX Runtime: fp32 engine as for ONNX Runtime vs PyTorch
x10 (TF32 may be used), fp16 engine depth 0.05 m, features 0.05 (LayerNorm kept fp32).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import import_cudart
from dinov2_ros.runtime.backends.tensorrt.loader import import_tensorrt

try:
    import_tensorrt()
    _cudart = import_cudart()
    _gpus = _cudart.cudaGetDeviceCount()
    SKIP_REASON = None if int(_gpus[0]) == 0 and _gpus[1] > 0 else "no CUDA GPU visible to cuda-python"
except ImportError as error:
    SKIP_REASON = f"TensorRT backend unavailable here: {error}"

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")

from tiny_graphs import frames, inputs_for, tiny_spec  # noqa: E402

from dinov2_ros.export.engine_build import build_engine  # noqa: E402
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from dinov2_ros.runtime.backends.tensorrt.loader import EngineLoader  # noqa: E402
from dinov2_ros.runtime.backends.tensorrt.runner import TensorRTRunner  # noqa: E402

FP16_ATOL = {"depth": 0.05, "features": 0.05, "masks": 0.05}


def runner(path, spec, precision: str, max_batch: int, cache_dir) -> TensorRTRunner:
    """The engine built into `cache_dir` (build time), then loaded and run as the node does."""
    loader = EngineLoader(path, spec, precision, max_batch, cache_dir)
    build_engine(loader)
    return TensorRTRunner(loader)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_onnxruntime(exported, tmp_path, precision):
    spec = tiny_spec()
    _, path = exported(spec)
    inputs = inputs_for(spec, frames("structured", spec, batch=2))
    with OnnxRuntimeBackend(path, spec, device="cpu") as reference:
        expected = reference.infer(inputs)
    with runner(path, spec, precision, 2, tmp_path) as backend:
        got = backend.infer(inputs)
    for name in ("depth", "features", "masks"):
        atol = 1e-3 if precision == "fp32" else FP16_ATOL[name]
        np.testing.assert_allclose(got[name], expected[name], atol=atol, err_msg=f"{precision} {name}")
    scores = got["detections"][..., 4]
    np.testing.assert_allclose(scores, expected["detections"][..., 4], atol=1e-3 if precision == "fp32" else 0.02)


def test_engine_is_reused_and_larger_batches_are_split(exported, tmp_path, caplog):
    spec = tiny_spec()
    _, path = exported(spec)
    with runner(path, spec, "fp32", 2, tmp_path):
        pass
    with caplog.at_level(logging.INFO), runner(path, spec, "fp32", 2, tmp_path) as backend:
        assert "reusing" in caplog.text
        inputs = inputs_for(spec, frames("random", spec, batch=3))
        assert backend.infer(inputs)["depth"].shape[0] == 3, "three frames on an engine for two: two runs"
        with pytest.raises(ValueError, match="'images' must be uint8"):
            backend.infer(inputs_for(spec, frames("random", spec).astype(np.float32)))

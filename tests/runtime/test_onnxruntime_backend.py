"""ONNX Runtime against the PyTorch reference, output by output, and the int8 quantised graph.

Thresholds (fp32, tiny encoder with random weights; both run the same float32 maths in a different
order): depth 1e-4 m, box corners 1e-3 px, scores and mask logits 1e-4, features 1e-4, classes equal.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import onnx
import pytest
from tiny_graphs import frames, inputs_for, tiny_spec

from dinov2_ros.export.quantize import quantize_graph
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.backends.torch_backend import TorchBackend
from dinov2_ros.runtime.graph_file import PRECISION_KEY, load_graph_spec, read_metadata

TOLERANCES = {"depth": 1e-4, "masks": 1e-4, "features": 1e-4}
BOX_ATOL = 1e-3
SCORE_ATOL = 1e-4


def prototypes_from_features(features: np.ndarray, spec) -> np.ndarray:
    """L2-normalised patch tokens of the first frame at spread-out cells, one per prototype slot."""
    tokens = features[0].reshape(spec.embed_dim, -1).T
    picked = tokens[np.linspace(0, len(tokens) - 1, spec.max_prototypes).astype(int)]
    return (picked / np.linalg.norm(picked, axis=1, keepdims=True)).astype(np.float32)


def assert_outputs_match(got: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    assert got.keys() == reference.keys()
    for name, expected in reference.items():
        assert got[name].shape == expected.shape and got[name].dtype == expected.dtype == np.float32, name
        if name == "detections":
            np.testing.assert_array_equal(got[name][..., 5], expected[..., 5])
            np.testing.assert_allclose(got[name][..., 4], expected[..., 4], atol=SCORE_ATOL)
            np.testing.assert_allclose(got[name][..., :4], expected[..., :4], atol=BOX_ATOL)
        else:
            np.testing.assert_allclose(got[name], expected, atol=TOLERANCES[name], err_msg=name)


SPECS = [
    tiny_spec(),
    tiny_spec(resize="letterbox"),
    tiny_spec(heads=("center",), features=False, input_width=84),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.key)
@pytest.mark.parametrize("image_kind", ["random", "structured"])
def test_onnxruntime_matches_pytorch(exported, spec, image_kind):
    graph, path = exported(spec)
    inputs = inputs_for(spec, frames(image_kind, spec))
    with OnnxRuntimeBackend(path, spec, threads=2) as ort_backend, TorchBackend(graph, device="cpu") as reference:
        if spec.exemplar:  # teach prototypes from the frames' own features, so there are objects to find
            inputs["prototypes"] = prototypes_from_features(reference.infer(inputs)["features"], spec)
        got, expected = ort_backend.infer(inputs), reference.infer(inputs)
        assert ort_backend.last_infer_s > 0
    assert_outputs_match(got, expected)
    if spec.detection:  # the outputs carry signal: live rows are valid boxes inside the image
        detections = got["detections"]
        live = detections[..., 4] > 0
        assert live.any(), "no live detection: the parity check would be vacuous"
        x1, y1, x2, y2, _, classes = np.moveaxis(detections[live], -1, 0)
        assert np.all(classes >= 0) and np.all(x1 < x2) and np.all(y1 < y2)
        assert (
            np.all(x1 >= 0) and np.all(y1 >= 0) and np.all(x2 <= spec.camera_width) and np.all(y2 <= spec.camera_height)
        )
        assert np.all(detections[~live][:, :4] == 0) and np.all(detections[~live][:, 5] == -1)
    if spec.depth:
        assert got["depth"].std() > 0


def test_int8_quantisation_quantises_matmuls_only_and_stays_close(exported, tmp_path, caplog):
    spec = tiny_spec()
    _, path = exported(spec)
    with caplog.at_level(logging.INFO):
        int8_path = quantize_graph(path, tmp_path / "tiny.int8.onnx")
    assert "quantising the MatMuls" in caplog.text  # our own INFO line stays
    # onnxruntime's per-tensor INFO lines are dropped
    assert "not specified" not in caplog.text and "Ignore MatMul" not in caplog.text
    ops = {node.op_type for node in onnx.load(int8_path).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert "ConvInteger" not in ops  # the patch embedding stays float
    assert read_metadata(int8_path)[PRECISION_KEY] == "int8"
    assert load_graph_spec(int8_path) == spec
    inputs = inputs_for(spec, frames("structured", spec))
    with OnnxRuntimeBackend(path) as fp32, OnnxRuntimeBackend(int8_path) as int8:
        reference, got = fp32.infer(inputs), int8.infer(inputs)
    a = reference["features"].transpose(0, 2, 3, 1).reshape(-1, spec.embed_dim)
    b = got["features"].transpose(0, 2, 3, 1).reshape(-1, spec.embed_dim)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99, f"int8 patch-token cosine {cosine.min():.5f}"
    assert np.abs(got["depth"] - reference["depth"]).max() < 0.5  # metres, on a 0..10 m head


def test_quantising_in_place_is_refused(exported):
    _, path = exported(tiny_spec())
    with pytest.raises(ValueError, match="must differ from the fp32 input"):
        quantize_graph(path, path)


def test_threads_stop_spinning_when_a_run_returns(exported):
    """ONNX Runtime's pool threads otherwise spin for a while after each run; on a 2-core robot
    computer that took about a third of the CPU the node needs for post-processing and DDS."""
    spec = tiny_spec()
    with OnnxRuntimeBackend(exported(spec)[1], spec, threads=2) as backend:
        feeds = inputs_for(spec, frames("random", spec))
        backend.infer(feeds)
        idle_cpu_s = []
        for _ in range(5):
            backend.infer(feeds)
            start = time.process_time()
            time.sleep(0.05)
            idle_cpu_s.append(time.process_time() - start)
    assert np.median(idle_cpu_s) < 0.005, f"{np.median(idle_cpu_s) * 1e3:.1f} ms of CPU in 50 ms after a run"


def test_each_call_returns_fresh_arrays_the_caller_keeps(exported):
    """The pipeline keeps a frame's features for teaching without copying them."""
    spec = tiny_spec()
    graph, path = exported(spec)
    inputs = inputs_for(spec, frames("random", spec))
    with OnnxRuntimeBackend(path, spec) as ort_backend, TorchBackend(graph, device="cpu") as torch_backend:
        for backend in (ort_backend, torch_backend):
            first, second = backend.infer(inputs), backend.infer(inputs)
            assert not any(np.shares_memory(first[name], second[name]) for name in first), backend.kind

"""The real vits14 graph end to end through `dinov2-ros export` (random weights, small frames), its int8
copy, and ONNX Runtime vs PyTorch parity on it; plus the build-engine and bench commands' refusals.

Thresholds for vits14 fp32 (12 blocks accumulate more rounding than the tiny encoder): depth 1e-3 m,
features 1e-3, scores 1e-3; int8 patch-token cosine >= 0.99.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from dinov2_ros.cli import bench, engine, export
from dinov2_ros.runtime.onnx_export import graph_class_names, load_graph_spec
from dinov2_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.torch_backend import TorchBackend


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dinov2-ros")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (export, engine, bench):
        module.register(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.slow
def test_export_command_writes_a_vits14_graph_that_matches_pytorch(tmp_path, capsys):
    argv = [
        "export",
        "--weights",
        "random",
        "--depth-weights",
        "random",
        "--camera",
        "112x84",
        "--input",
        "70x56",
        "--heads",
        "depth",
        "exemplar",
        "--features",
        "--top-k",
        "8",
        "--max-prototypes",
        "4",
        "--output-dir",
        str(tmp_path),
        "--int8",
    ]
    torch.manual_seed(0)
    assert run(argv) == 0
    fp32_path, int8_path = (tmp_path / line for line in capsys.readouterr().out.split())
    spec = load_graph_spec(fp32_path)
    assert (spec.variant, spec.camera_width, spec.camera_height, spec.input_width, spec.input_height) == (
        "vits14",
        112,
        84,
        70,
        56,
    )
    assert load_graph_spec(int8_path) == spec

    args = argparse.Namespace(
        variant="vits14",
        weights="random",
        camera=(84, 112),
        input=(56, 70),
        resize="stretch",
        heads=["depth", "exemplar"],
        depth_weights="random",
        depth_dataset="nyu",
        depth_kind="linear",
        center_head=None,
        top_k=8,
        max_prototypes=4,
        max_classes=16,
        features=True,
    )
    rng = np.random.default_rng(0)
    inputs = {"images": rng.integers(0, 256, (2, 84, 112, 3), dtype=np.uint8)}
    torch.manual_seed(0)  # the same random draw as the exported graph's
    graph, _ = export.graph_from_args(args)
    with TorchBackend(graph, device="cpu") as reference, OnnxRuntimeBackend(fp32_path, spec) as ort_backend:
        features = reference.infer(inputs | probe_prototypes(spec))["features"]
        tokens = features[0].reshape(spec.embed_dim, -1).T[[0, 5, 10, 15]]
        inputs |= {
            "prototypes": (tokens / np.linalg.norm(tokens, axis=1, keepdims=True)).astype(np.float32),
            "prototype_classes": np.array([0, 1, 2, -1], np.int32),
        }
        expected, got = reference.infer(inputs), ort_backend.infer(inputs)
    np.testing.assert_allclose(got["depth"], expected["depth"], atol=1e-3)
    np.testing.assert_allclose(got["features"], expected["features"], atol=1e-3)
    np.testing.assert_allclose(got["detections"][..., 4], expected["detections"][..., 4], atol=1e-3)
    with OnnxRuntimeBackend(int8_path, spec) as int8:
        quantised = int8.infer(inputs)["features"].transpose(0, 2, 3, 1).reshape(-1, spec.embed_dim)
    reference_tokens = got["features"].transpose(0, 2, 3, 1).reshape(-1, spec.embed_dim)
    cosine = (
        (quantised * reference_tokens).sum(1)
        / np.linalg.norm(quantised, axis=1)
        / np.linalg.norm(reference_tokens, axis=1)
    )
    assert cosine.min() >= 0.99


def probe_prototypes(spec) -> dict[str, np.ndarray]:
    return {
        "prototypes": np.eye(spec.max_prototypes, spec.embed_dim, dtype=np.float32),
        "prototype_classes": np.full(spec.max_prototypes, -1, np.int32),
    }


def test_commands_refuse_bad_requests(tmp_path, caplog):
    assert run(["export", "--heads", "center", "--weights", "random", "--output-dir", str(tmp_path)]) == 2
    assert "--heads center needs --center-head" in caplog.text
    assert run(["bench", "--batch", "0"]) == 2
    assert "--batch must be >= 1" in caplog.text
    with pytest.raises(SystemExit):
        run(["export", "--camera", "640by480"])
    missing = tmp_path / "missing.onnx"
    assert run(["build-engine", str(missing)]) == 2


@pytest.mark.slow
def test_bench_command_times_stages_and_the_bare_encoder(capsys):
    argv = ["bench", "--camera", "56x42", "--input", "28x28", "--iterations", "2", "--warmup", "0", "--threads", "1"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    for stage in ("copy in", "graph", "copy out", "end to end", "bare encoder", "FPS", "graph/encoder"):
        assert f"{stage}:" in out, out
    assert "vits14-cam56x42-in28x28-stretch-depth+exemplar" in out


def test_export_takes_a_trained_center_head_and_refuses_a_mismatched_one(tmp_path, caplog):
    """A head saved as train-detector saves it (encoder named by variant and weights) exports; one
    trained with another resize mode is refused with the reason."""
    from dinov2_ros.model.center_head import CenterHead, CenterHeadInfo, save_center_head

    head = CenterHead(384, num_classes=2, hidden_dim=8, top_k=4)
    checkpoint = save_center_head(
        tmp_path / "head.pt", head, CenterHeadInfo("vits14:random", (56, 70), "stretch", ("a", "b"), 384, 8)
    )
    common = ["export", "--weights", "random", "--camera", "112x84", "--input", "70x56", "--top-k", "4"]
    out = tmp_path / "graphs"
    assert run([*common, "--heads", "center", "--center-head", str(checkpoint), "--output-dir", str(out)]) == 0
    (exported,) = out.glob("*.onnx")
    assert load_graph_spec(exported).detection == "center"
    assert graph_class_names(exported) == ("a", "b"), "the node names the classes from the file alone"
    letterbox = [*common, "--heads", "center", "--resize", "letterbox", "--center-head", str(checkpoint)]
    assert run([*letterbox, "--output-dir", str(tmp_path / "refused")]) != 0
    assert "letterbox" in caplog.text and "stretch" in caplog.text

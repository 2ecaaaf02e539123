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
from dinov2_ros.model.factory import perception_graph_for
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.backends.torch_backend import TorchBackend
from dinov2_ros.runtime.graph_file import graph_class_names, load_graph_spec


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dinov2-ros")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (export, engine, bench):
        module.register(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


COMMON = ["--weights", "random", "--camera", "112x84", "--input-height", "56", "--input-width", "70"]


@pytest.mark.slow
def test_export_command_writes_a_vits14_graph_that_matches_pytorch(tmp_path, capsys, small_vits14_settings):
    argv = ["export", *COMMON, "--depth-weights", "random", "--top-k", "8", "--max-prototypes", "4"]
    torch.manual_seed(0)
    assert run([*argv, "--graph-dir", str(tmp_path)]) == 0
    (fp32_path,) = (tmp_path / line for line in capsys.readouterr().out.split())
    assert run([*argv, "--graph-dir", str(tmp_path), "--precision", "int8"]) == 0
    (int8_path,) = (tmp_path / line for line in capsys.readouterr().out.split())
    spec = load_graph_spec(fp32_path)
    assert (spec.variant, spec.camera_width, spec.camera_height, spec.input_width, spec.input_height) == (
        "vits14",
        112,
        84,
        70,
        56,
    )
    assert spec.heads == ("depth", "exemplar") and spec.features, "the node's defaults: depth and taught classes"
    assert load_graph_spec(int8_path) == spec

    opener = BackendOpener(small_vits14_settings)
    assert opener.find_graph_file(opener.spec_for(84, 112)) == fp32_path, "the node's opener finds what export wrote"
    rng = np.random.default_rng(0)
    inputs = {"images": rng.integers(0, 256, (2, 84, 112, 3), dtype=np.uint8)}
    torch.manual_seed(0)  # the same random draw as the exported graph's
    graph, _ = perception_graph_for(small_vits14_settings, spec)
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
    assert run(["export", "--detector", "center", "--weights", "random", "--graph-dir", str(tmp_path)]) == 2
    assert "model.detector is 'center' but model.detector_weights is empty" in caplog.text
    assert run(["export", "--params-file", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the parameter file" in caplog.text
    assert run(["export", "--backend", "onnxruntime", "--precision", "fp16", "--weights", "random"]) == 2
    assert "not available with backend.kind 'onnxruntime'" in caplog.text
    assert run(["bench", "--batch", "0"]) == 2
    assert "--batch must be >= 1" in caplog.text
    with pytest.raises(SystemExit):
        run(["export", "--camera", "640by480"])
    assert run(["build-engine", "--weights", "random", "--graph-dir", str(tmp_path)]) == 2
    assert "tensorrt" in caplog.text.lower()
    assert not list(tmp_path.glob("*.onnx")), "no minute-long export before finding that TensorRT is missing"


def test_export_reads_the_node_parameter_file_and_options_win(tmp_path):
    from dinov2_ros.cli.model_options import add_model_options, settings_from_args

    params = tmp_path / "robot.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    model:\n      weights: random\n      top_k: 7\n    cameras: [front]\n"
        "dinov2:\n  ros__parameters:\n    model.top_k: 9\n    backend.kind: torch\n"
        "other_node:\n  ros__parameters:\n    model.top_k: 11\n"
    )
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    settings = settings_from_args(parser.parse_args(["--params-file", str(params)]))
    assert (settings.weights, settings.top_k, settings.backend) == ("random", 9, "torch")
    assert settings.input_height == 224, "unset settings take the node's defaults"
    settings = settings_from_args(parser.parse_args(["--params-file", str(params), "--top-k", "3"]))
    assert settings.top_k == 3


@pytest.mark.export
@pytest.mark.slow
def test_bench_command_times_stages_and_the_bare_encoder(capsys):
    argv = ["bench", "--camera", "56x42", "--input-height", "28", "--input-width", "28", "--iterations", "2"]
    assert run([*argv, "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for stage in ("copy in", "graph", "copy out", "end to end", "bare encoder", "FPS", "graph/encoder"):
        assert f"{stage}:" in out, out
    assert "vits14-cam56x42-in28x28-stretch-depth+exemplar" in out


@pytest.mark.export
def test_export_takes_a_trained_center_head_and_refuses_a_mismatched_one(tmp_path, caplog):
    """A head saved as train-detector saves it (encoder named by variant and weights) exports; one
    trained with another resize mode is refused with the reason."""
    from dinov2_ros.model.heads.center import CenterHead, CenterHeadInfo, save_center_head
    from dinov2_ros.weights.identity import encoder_name

    head = CenterHead(384, num_classes=2, hidden_dim=8, top_k=4)
    info = CenterHeadInfo(encoder_name("vits14", "random"), (56, 70), "stretch", ("a", "b"), 384, 8)
    checkpoint = save_center_head(tmp_path / "head.pt", head, info)
    common = ["export", *COMMON, "--top-k", "4", "--detector", "center", "--detector-weights", str(checkpoint)]
    out = tmp_path / "graphs"
    assert run([*common, "--graph-dir", str(out)]) == 0
    (exported,) = out.glob("*.onnx")
    assert load_graph_spec(exported).detection == "center"
    assert graph_class_names(exported) == ("a", "b"), "the node names the classes from the file alone"
    assert run([*common, "--resize", "letterbox", "--graph-dir", str(tmp_path / "refused")]) != 0
    assert "letterbox" in caplog.text and "stretch" in caplog.text

"""dino.txt's text encoder in the artifact store: the store lacks it until it is exported, `make` exports
it beside the vision graph, and a graph of other weights or without its vocabulary is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tiny_graphs import TINY_DIM, tiny_graph, tiny_settings, tiny_text_encoder, write_tiny_vocabulary

from dinov2_ros.cli import main
from dinov2_ros.export.camera_graph import set_metadata
from dinov2_ros.export.core_export import export_graph
from dinov2_ros.export.graph_builder import GraphBuilder
from dinov2_ros.export.text_encoder_export import export_text_encoder, text_encoder_path
from dinov2_ros.model.factory import create_text_encoder
from dinov2_ros.runtime.artifact_store import ArtifactStore
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.backends.triton_backend import triton_model_name
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.runtime.provenance import provenance_of
from dinov2_ros.runtime.text_encoder import (
    TEXT_ENCODER_KEY,
    TextEncoderGraph,
    find_text_encoder,
    text_encoder_identity,
    text_encoder_source,
    vocabulary_beside,
)

pytestmark = pytest.mark.export
CAMERA = (60, 80)


def dinotxt_settings(graph_dir: Path) -> ModelSettings:
    return tiny_settings(graph_dir, **{"model.dinotxt_weights": "random"})


def store_vision_graph(settings: ModelSettings) -> Path:
    provenance = provenance_of(settings)
    spec = settings.spec_for(*CAMERA, TINY_DIM)
    path = ArtifactStore(settings.graph_dir).graph_path(spec, provenance)
    return export_graph(tiny_graph(spec), path, check=False, provenance=provenance.to_json())


@pytest.mark.slow  # exports the released text encoder's size (538 M parameters, 2.15 GB)
def test_make_exports_the_text_encoder_the_store_lacks(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    write_tiny_vocabulary(cache / "bpe_simple_vocab_16e6.txt.gz")  # CLIP's vocabulary as the weights cache holds it
    monkeypatch.setenv("DINOV2_ROS_CACHE", str(cache))
    settings = dinotxt_settings(tmp_path / "graphs")
    store_vision_graph(settings)
    opener = BackendOpener(settings)
    assert opener.missing(*CAMERA) == "the dino.txt text encoder graph"
    made = GraphBuilder(settings).make(*CAMERA)
    assert opener.missing(*CAMERA) == ""
    text_graph = opener.find_text_encoder_file()
    assert made[-1] == text_graph and text_graph.parent == tmp_path / "graphs" / "text"
    assert vocabulary_beside(text_graph).read_bytes() == (cache / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    assert text_graph.with_name(text_graph.name + ".data").stat().st_size > 2e9  # external data: over 2 GiB in all
    rows = np.array([[49406, 320, 1125, 49407, 0], [49406, 8437, 49407, 0, 0]], np.int64)
    with torch.no_grad():
        expected = create_text_encoder("random")(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(TextEncoderGraph(text_graph).encode(rows), expected, atol=1e-4)


def test_text_graphs_of_other_weights_or_without_vocabulary_are_skipped_with_the_reason(tmp_path) -> None:
    vocabulary = write_tiny_vocabulary(tmp_path / "vocab.txt.gz")
    mine = export_text_encoder(tiny_text_encoder(), vocabulary, text_encoder_path(tmp_path, "sha256:aa"), "sha256:aa")
    other = export_text_encoder(tiny_text_encoder(), vocabulary, text_encoder_path(tmp_path, "sha256:bb"), "sha256:bb")
    assert find_text_encoder(tmp_path, "sha256:aa") == (mine, [(other, "weights 'sha256:bb' -> 'sha256:aa'")])
    vocabulary_beside(mine).unlink()
    found, skipped = find_text_encoder(tmp_path, "sha256:aa")
    assert found is None and ("its vocabulary" in dict(skipped)[mine])
    model = onnx.load(other)
    record = json.loads(next(p.value for p in model.metadata_props if p.key == TEXT_ENCODER_KEY))
    set_metadata(model, {TEXT_ENCODER_KEY: json.dumps(record | {"exporter": "0.1.0"})})
    onnx.save(model, other)
    assert "exporter '0.1.0' -> " in dict(find_text_encoder(tmp_path, "sha256:bb")[1])[other]


def test_a_robot_without_the_text_encoder_file_takes_the_graph_exported_from_its_path(tmp_path) -> None:
    settings = ModelSettings.from_values(
        {"model.weights": "random", "model.variant": "vitl14_reg4", "model.graph_dir": str(tmp_path),
         "model.dinotxt_weights": "/models/cell7_vision_head.pth"}
    )  # fmt: skip
    identity, source = text_encoder_identity(settings), text_encoder_source(settings)
    assert identity == "unverified:/models/cell7_text_encoder.pth" and source == "/models/cell7_text_encoder.pth"
    vocabulary = write_tiny_vocabulary(tmp_path / "vocab.txt.gz")
    exported = export_text_encoder(  # on the workstation, where the file was: its sha256 and its path
        tiny_text_encoder(), vocabulary, text_encoder_path(tmp_path, "sha256:cc"), "sha256:cc", source
    )
    assert find_text_encoder(tmp_path, identity) == (exported, [])
    assert find_text_encoder(tmp_path, "unverified:/models/other_text_encoder.pth")[0] is None


def test_export_with_a_triton_repository_serves_the_vision_graph_not_the_text_encoder(tmp_path, capsys) -> None:
    """The node encodes prompts itself: `export --triton-repository` writes the vision graph as a model
    and leaves the text encoder graph in the store."""
    settings = dinotxt_settings(tmp_path / "graphs")
    vision = store_vision_graph(settings)
    identity = text_encoder_identity(settings)
    text = export_text_encoder(
        tiny_text_encoder(), write_tiny_vocabulary(tmp_path / "vocab.txt.gz"),
        text_encoder_path(settings.graph_dir, identity), identity, text_encoder_source(settings),
    )  # fmt: skip
    repository = tmp_path / "repository"
    argv = ["export", *settings.cli_options(), "--camera", f"{CAMERA[1]}x{CAMERA[0]}"]  # as the node's child runs it
    assert main([*argv, "--triton-repository", str(repository), "--triton-platform", "python"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(vision) in printed and str(text) in printed
    models = [path.name for path in repository.iterdir() if not path.name.startswith(".")]
    assert models == [triton_model_name(vision)]

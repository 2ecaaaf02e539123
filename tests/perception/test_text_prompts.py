"""Classes named in words (dino.txt): the zero-shot recipe, the stored text encoder graph, and a prompt's
class running the graph as the same embedding taught as a prototype does.

The encoders are tiny and random (tiny_graphs.py): this is the plumbing. Whether a prompt finds the part
it names depends on Meta's weights, which are not here (Meta reports dino.txt's accuracy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_graphs import tiny_graph, tiny_text_encoder, write_tiny_vocabulary

from dinov2_ros.export.core_export import export_graph
from dinov2_ros.export.text_encoder_export import export_text_encoder, text_encoder_path
from dinov2_ros.model.dinotxt import patch_aligned
from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.clip_tokenizer import ClipTokenizer
from dinov2_ros.perception.frame import CameraFrame
from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.perception.prompt_templates import check_templates
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.perception.text_prompts import PromptEncoder, StoredPromptEncoder
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.text_encoder import find_text_encoder
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

TEMPLATES = ("a photo of a {}.", "the {} on the table")
SIZE = (120, 160)


def torch_encode(encoder):
    def encode(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return encoder(torch.from_numpy(rows)).numpy()

    return encode


def test_a_prompt_prototype_is_the_normalised_mean_of_its_templates_patch_halves(tmp_path: Path) -> None:
    tokenizer = ClipTokenizer(write_tiny_vocabulary(tmp_path / "vocab.txt.gz"), context_length=16)
    encoder = tiny_text_encoder()
    prototype = PromptEncoder(tokenizer, torch_encode(encoder), TEMPLATES).prototype("  blue bolt ")
    with torch.no_grad():  # Meta's recipe on the padded rows its tokenizer writes
        halves = patch_aligned(
            encoder(torch.from_numpy(tokenizer(["a photo of a blue bolt.", "the blue bolt on the table"])))
        )
    expected = torch.nn.functional.normalize(halves.mean(dim=0), dim=0).numpy()
    np.testing.assert_allclose(prototype, expected, atol=1e-5)
    assert prototype.shape == (32,) and abs(np.linalg.norm(prototype) - 1) < 1e-6
    with pytest.raises(ValueError, match="must hold words"):
        PromptEncoder(tokenizer, torch_encode(encoder)).prototype("  ")


@pytest.mark.parametrize("templates", [(), ("no slot",), ("two {} {}",), ("{} and {x}",)])
def test_templates_need_one_slot_for_the_prompt(templates) -> None:
    with pytest.raises(ValueError, match=r"must each hold one '\{\}'"):
        check_templates(templates)


def test_tokenizer_refuses_a_file_that_is_no_vocabulary(tmp_path: Path) -> None:
    (tmp_path / "page.gz").write_text("<html>not found</html>")
    with pytest.raises(ValueError, match=r"cannot read the BPE vocabulary .*weights fetch dinotxt"):
        ClipTokenizer(tmp_path / "page.gz")


@pytest.mark.export
def test_a_prompt_class_runs_the_graph_as_the_same_embedding_taught_by_hand(tmp_path: Path) -> None:
    spec = GraphSpec("tiny", *SIZE, 56, 56, heads=("exemplar",), top_k=5, max_prototypes=4, max_classes=3,
                     embed_dim=32, features=True, dinotxt=True)  # fmt: skip
    graph = export_graph(tiny_graph(spec), tmp_path / "graph.onnx")
    encoder = tiny_text_encoder()
    text_graph = export_text_encoder(
        encoder, write_tiny_vocabulary(tmp_path / "vocab.txt.gz"), text_encoder_path(tmp_path, "random-seed0"),
        "random-seed0",
    )  # fmt: skip
    assert find_text_encoder(tmp_path, "random-seed0") == (text_graph, [])
    stored = StoredPromptEncoder(lambda: find_text_encoder(tmp_path, "random-seed0")[0])
    prompted = stored.prototype("blue bolt", ("a photo of a {}.",))

    # the same embedding by hand: the torch encoder on Meta's padded tokens, its patch half normalised
    tokens = ClipTokenizer(tmp_path / "vocab.txt.gz", context_length=16)(["a photo of a blue bolt."])
    with torch.no_grad():
        by_hand = patch_aligned(encoder(torch.from_numpy(tokens)))[0].numpy()
    np.testing.assert_allclose(prompted, by_hand, atol=1e-5)

    scene = SyntheticSceneGenerator(7, SIZE[1], SIZE[0]).render(0)
    frame = CameraFrame("cam", scene.image_rgb, scene.depth, PinholeCameraModel(scene.K, np.zeros(5), SIZE[1], SIZE[0]))
    results = []
    for teach in ("prompt", "by hand"):
        store = PrototypeStore("tiny:random+dinotxt:random", (56, 56), 32)
        pipeline = FramePipeline(lambda h, w: OnnxRuntimeBackend(graph, threads=1), store, max_classes=3)
        pipeline.score_threshold = 0.0
        if teach == "prompt":
            assert pipeline.add_class("blue bolt", text_prototypes=prompted[None], prompt="blue bolt") == 0
            assert store is not pipeline._prototypes and pipeline._prototypes.prompts_of("blue bolt") == ["blue bolt"]
        else:
            store.add_prototypes("blue bolt", by_hand[None])
        results.append(pipeline.process([frame])[0])
        pipeline.close()
    prompted_result, by_hand_result = results
    assert prompted_result.detections, "the comparison needs detections (score threshold 0)"
    assert [d.box.tolist() for d in prompted_result.detections] == [d.box.tolist() for d in by_hand_result.detections]
    np.testing.assert_allclose(
        [d.score for d in prompted_result.detections], [d.score for d in by_hand_result.detections], atol=1e-4
    )


@pytest.mark.export
def test_a_class_mixes_words_and_a_box_in_one_change(tmp_path: Path) -> None:
    spec = GraphSpec("tiny", *SIZE, 56, 56, heads=("exemplar",), top_k=5, max_prototypes=2, max_classes=3,
                     embed_dim=32, features=True, dinotxt=True)  # fmt: skip
    graph = export_graph(tiny_graph(spec), tmp_path / "graph.onnx")
    store = PrototypeStore("tiny:random+dinotxt:random", (56, 56), 32)
    pipeline = FramePipeline(lambda h, w: OnnxRuntimeBackend(graph, threads=1), store, max_classes=3)
    scene = SyntheticSceneGenerator(7, SIZE[1], SIZE[0]).render(0)
    pipeline.process([CameraFrame("cam", scene.image_rgb)])
    text = np.eye(1, 32, 3, dtype=np.float32)
    box = [20.0, 15.0, 140.0, 105.0]  # most of the 4x4 patch grid: a box prototype needs half-covered patches
    class_id = pipeline.add_class("part", camera="cam", box=box, text_prototypes=text, prompt="a part")
    assert pipeline.labels() == {class_id: "part"}
    taught = pipeline._prototypes.prototypes_of("part")
    assert len(taught) == 2 and np.allclose(taught[0], text[0])  # the prompt's and the box's
    with pytest.raises(ValueError, match="do not fit the graph's 2 slots"):  # unchanged on refusal
        pipeline.add_class("other", text_prototypes=-text, prompt="another part")
    assert pipeline.labels() == {class_id: "part"}
    with pytest.raises(ValueError, match="give a box, a text prompt, or both"):
        pipeline.add_class("nothing")
    pipeline.close()


def test_a_missing_tokenizer_package_says_how_to_install_it(monkeypatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "ftfy", None)  # as on a robot upgraded without requirements/runtime.txt
    monkeypatch.delitem(sys.modules, "dinov2_ros.perception.clip_tokenizer")
    with pytest.raises(
        ModuleNotFoundError, match=r"needs the `ftfy` package .*pip install -r requirements/runtime.txt"
    ):
        importlib.import_module("dinov2_ros.perception.clip_tokenizer")


def test_a_text_class_before_any_graph_is_checked_against_the_slots_the_settings_give() -> None:
    pipeline = FramePipeline(lambda h, w: None, PrototypeStore("tiny", (56, 56), 4), max_classes=3, max_prototypes=1)
    assert pipeline.add_class("a", text_prototypes=np.eye(1, 4, 0, dtype=np.float32), prompt="a") == 0
    with pytest.raises(ValueError, match="do not fit the graph's 1 slots"):  # refused now, not on every frame later
        pipeline.add_class("b", text_prototypes=np.eye(1, 4, 1, dtype=np.float32), prompt="b")
    assert pipeline.labels() == {0: "a"}

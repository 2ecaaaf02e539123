"""`dinov2-ros teach --text`: parts named in words become prototypes in a prototype file, beside examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_graphs import write_tiny_vocabulary

from dinov2_ros.cli import main
from dinov2_ros.model.dinotxt import patch_aligned
from dinov2_ros.model.factory import create_text_encoder
from dinov2_ros.perception.clip_tokenizer import ClipTokenizer
from dinov2_ros.perception.prototypes import PrototypeStore

COMMON = ["--variant", "vitl14_reg4", "--weights", "random", "--input-size", "224", "308"]


@pytest.mark.slow  # the released text encoder's size (538 M parameters), drawn at random
def test_teach_text_writes_the_prompts_prototypes(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    vocabulary = write_tiny_vocabulary(cache / "bpe_simple_vocab_16e6.txt.gz")  # placed by hand: recorded at use
    monkeypatch.setenv("DINOV2_ROS_CACHE", str(cache))
    output = tmp_path / "parts.npz"
    argv = ["teach", "--output", str(output), *COMMON, "--dinotxt-weights", "random"]
    assert main([*argv, "--text", "blue connector", "--text", "bolt = hex bolt", "--templates", "a {} part"]) == 0
    store = PrototypeStore.load(output, encoder="vitl14_reg4:random+dinotxt:random", input_size=(224, 308))
    assert store.class_ids == {"blue connector": 0, "bolt": 1}
    assert store.prompts_of("bolt") == ["hex bolt"]
    tokens = ClipTokenizer(vocabulary)(["a hex bolt part"])
    with torch.no_grad():
        expected = patch_aligned(create_text_encoder("random")(torch.from_numpy(tokens)))[0].numpy()
    np.testing.assert_allclose(store.prototypes_of("bolt")[0], expected, atol=1e-5)
    assert store.prototypes_of("bolt").shape == (1, 1024)


def test_teach_text_refusals_say_what_to_add(tmp_path, caplog) -> None:
    argv = ["teach", "--output", str(tmp_path / "parts.npz"), *COMMON]
    assert main([*argv, "--text", "blue connector"]) == 2
    assert "--text needs dino.txt: add --dinotxt-weights pretrained" in caplog.text
    assert main(argv) == 2
    assert "give an EXAMPLES folder, --text prompts, or both" in caplog.text
    assert main([*argv, "--dinotxt-weights", "random", "--text", "x=", "--text", "y"]) == 2
    assert "must be a prompt or CLASS=PROMPT" in caplog.text
    small = ["teach", "--output", str(tmp_path / "parts.npz"), "--variant", "vits14", "--weights", "random"]
    assert main([*small, "--input-size", "224", "308", "--dinotxt-weights", "random", "--text", "x"]) == 2
    assert "--dinotxt-weights needs --variant vitl14_reg4" in caplog.text


def test_teach_text_offline_without_the_vocabulary_says_where_to_put_it(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("DINOV2_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DINOV2_ROS_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # nothing listens: offline
    argv = ["teach", "--output", str(tmp_path / "parts.npz"), *COMMON, "--dinotxt-weights", "random"]
    assert main([*argv, "--text", "blue connector"]) == 2
    assert "could not download bpe_simple_vocab_16e6.txt.gz" in caplog.text
    assert not (tmp_path / "parts.npz").exists()

"""dino.txt's files load strictly into our modules, and a wrong file is named for what it is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dinov2_ros.model.checkpoint import CheckpointError
from dinov2_ros.model.dinotxt import DinoTxtVisionHead, TextEncoder, patch_aligned
from dinov2_ros.model.factory import create_dinotxt_vision_head, create_text_encoder
from dinov2_ros.perception.clip_tokenizer import trim_padding

TINY_TEXT = dict(context=16, vocab_size=64, dim=32, num_heads=2, num_layers=2, ffn_ratio=4.0, embed_dim=48)


def test_vision_head_file_loads_and_other_files_are_named() -> None:
    head = DinoTxtVisionHead.from_release()
    state = {key: torch.randn_like(value) for key, value in head.state_dict().items()}
    loaded = create_dinotxt_vision_head(state)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state.items())
    with pytest.raises(CheckpointError, match=r"missing keys: ln_final.bias"):
        create_dinotxt_vision_head({key: value for key, value in state.items() if key != "ln_final.bias"})
    text_layout = {
        "backbone.token_embedding.weight": torch.zeros(4, 4),
        "head.linear_projection.weight": torch.zeros(4, 4),
    }
    with pytest.raises(CheckpointError, match=r"looks like the text encoder file of dino.txt"):
        create_dinotxt_vision_head(text_layout)
    with pytest.raises(CheckpointError, match=r"looks like a backbone checkpoint, not a dino.txt file"):
        create_dinotxt_vision_head({"cls_token": torch.zeros(1, 1, 1024)})


def test_text_encoder_is_found_beside_its_vision_head(tmp_path: Path) -> None:
    head = tmp_path / "custom_vision_head.pth"
    torch.save(DinoTxtVisionHead.from_release().state_dict(), head)
    with pytest.raises(ValueError, match=r"no text encoder beside the dino.txt vision head"):
        create_text_encoder(head)
    with pytest.raises(ValueError, match=r"named <name>_vision_head.pth"):
        create_text_encoder(tmp_path / "weights.pth")
    torch.save({"block_list.0.norm1.weight": torch.zeros(1024)}, tmp_path / "custom_text_encoder.pth")
    with pytest.raises(CheckpointError, match=r"looks like the vision head file of dino.txt"):
        create_text_encoder(head)


def test_text_encoder_pools_at_the_end_token_and_ignores_padding() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(**TINY_TEXT).eval()
    encoder.init_weights()
    rows = torch.tensor([[62, 5, 6, 63, 0, 0, 0, 0], [62, 7, 63, 0, 0, 0, 0, 0]])  # start, text, end (highest id)
    with torch.no_grad():
        full = encoder(rows)
        trimmed = encoder(torch.from_numpy(trim_padding(rows.numpy())))
        alone = encoder(rows[1:, :3])
    assert trim_padding(rows.numpy()).shape == (2, 4)
    assert full.shape == (2, 48)
    torch.testing.assert_close(trimmed, full, rtol=0, atol=1e-5)  # float32 rounding: fewer keys in the reductions
    torch.testing.assert_close(alone, full[1:], rtol=0, atol=1e-5)  # float32 rounding: fewer keys in the reductions
    aligned = patch_aligned(full)
    assert aligned.shape == (2, 24)
    torch.testing.assert_close(aligned.norm(dim=1), torch.ones(2))

"""Strict loading of checkpoints in Meta's layout for every variant, and every loader error.

The expected layout is written here from the published key names and shape rules (not from the
model code), so a drift in either shows up. Full-width shapes are checked on the meta device (no
memory); files are written at full width for vits14 and at scaled-down widths for the others.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dinov2_ros.model import (
    CheckpointError,
    DinoVisionTransformer,
    create_backbone,
    load_backbone_state_dict,
    official_to_hf,
    read_checkpoint,
)
from dinov2_ros.weights.variants import VARIANTS, BackboneVariant

KEY_COUNTS = {"vits14": 175, "vitb14": 175, "vitl14": 343, "vitg14": 567}  # without registers
SCALED_WIDTH = {"vits14": 384, "vitb14": 48, "vitl14": 32, "vitg14": 48}  # heads must divide it


def official_layout(variant: BackboneVariant, dim: int, swiglu_hidden: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a released DINOv2 checkpoint with embedding width `dim`."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, 1370, dim),
        "mask_token": (1, dim),
        "patch_embed.proj.weight": (dim, 3, 14, 14),
        "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    if variant.num_register_tokens:
        shapes["register_tokens"] = (1, 4, dim)
    for i in range(variant.depth):
        block = {
            "norm1.weight": (dim,), "norm1.bias": (dim,),
            "attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,),
            "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
            "ls1.gamma": (dim,), "norm2.weight": (dim,), "norm2.bias": (dim,), "ls2.gamma": (dim,),
        }  # fmt: skip
        if variant.ffn == "swiglu":
            block |= {
                "mlp.w12.weight": (2 * swiglu_hidden, dim), "mlp.w12.bias": (2 * swiglu_hidden,),
                "mlp.w3.weight": (dim, swiglu_hidden), "mlp.w3.bias": (dim,),
            }  # fmt: skip
        else:
            block |= {
                "mlp.fc1.weight": (4 * dim, dim), "mlp.fc1.bias": (4 * dim,),
                "mlp.fc2.weight": (dim, 4 * dim), "mlp.fc2.bias": (dim,),
            }  # fmt: skip
        shapes |= {f"blocks.{i}.{key}": shape for key, shape in block.items()}
    return shapes


def write_official_checkpoint(path: Path, layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) * 0.02 for key, shape in layout.items()}
    torch.save(state, path)
    return state


@pytest.mark.parametrize("name", list(VARIANTS))
def test_full_size_state_dict_matches_the_released_layout(name: str) -> None:
    variant = VARIANTS[name]
    with torch.device("meta"):
        model = DinoVisionTransformer.from_variant(variant)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    expected = official_layout(variant, variant.embed_dim, swiglu_hidden=4096)
    assert shapes == expected
    assert len(shapes) == KEY_COUNTS[variant.arch] + (1 if variant.num_register_tokens else 0)


@pytest.mark.parametrize("name", [name for name in VARIANTS if not name.startswith("vits14")])
def test_scaled_down_official_checkpoint_loads_strictly(name: str, tmp_path: Path) -> None:
    variant = VARIANTS[name]
    dim = SCALED_WIDTH[variant.arch]
    swiglu_hidden = (int(dim * 4 * 2 / 3) + 7) // 8 * 8  # DINOv2's SwiGLU width rule
    state = write_official_checkpoint(tmp_path / "ckpt.pth", official_layout(variant, dim, swiglu_hidden))
    model = DinoVisionTransformer.from_variant(variant, embed_dim=dim).eval()
    load_backbone_state_dict(model, read_checkpoint(tmp_path / "ckpt.pth"), "ckpt.pth")
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 3, 28, 42))
    assert out["patch_tokens"].shape == (1, 6, dim) and torch.isfinite(out["patch_tokens"]).all()


@pytest.mark.parametrize("name", ["vits14", "vits14_reg4"])
def test_vits14_pretrained_comes_from_the_cache_and_loads_strictly(name: str, cache_dir: Path) -> None:
    variant = VARIANTS[name]
    cache_dir.mkdir()
    path = cache_dir / variant.checkpoint.filename
    state = write_official_checkpoint(path, official_layout(variant, 384, swiglu_hidden=0))
    model = create_backbone(name, weights="pretrained", cache_dir=cache_dir)
    assert not model.training
    assert torch.equal(model.pos_embed, state["pos_embed"])
    assert torch.equal(model.blocks[11].mlp.fc2.weight, state["blocks.11.mlp.fc2.weight"])
    from_path = create_backbone(name, weights=path)
    assert torch.equal(from_path.norm.weight, state["norm.weight"])


@pytest.mark.parametrize(("naming", "suffix"), [("hub", ".safetensors"), ("modules", ".pth")])
def test_hugging_face_layout_is_detected_and_loaded(naming: str, suffix: str, make_tiny, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = make_tiny(4, "swiglu")
    converted = official_to_hf(source.state_dict(), naming=naming)
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        save_file(converted, path)
    else:
        torch.save(converted, path)
    target = DinoVisionTransformer(64, 4, 2, ffn="swiglu", num_register_tokens=4)
    load_backbone_state_dict(target, read_checkpoint(path), path.name)
    assert all(torch.equal(target.state_dict()[key], value) for key, value in source.state_dict().items())


def test_weights_must_be_chosen_explicitly() -> None:
    with pytest.raises(ValueError, match="no weights given for backbone vits14; pass weights='pretrained'"):
        create_backbone("vits14")
    with pytest.raises(ValueError, match="unknown backbone 'vitx14'; choose one of vits14, vits14_reg4"):
        create_backbone("vitx14", weights="random")
    with pytest.raises(ValueError, match=r"'missing\.pth' is neither a file nor 'pretrained'/'random'"):
        create_backbone("vits14", weights="missing.pth")


def test_checkpoint_of_another_variant_names_keys_and_shapes(make_tiny) -> None:
    wider = DinoVisionTransformer(128, 2, 2).state_dict()
    with pytest.raises(CheckpointError) as error:
        load_backbone_state_dict(make_tiny(), wider, "other.pth")
    message = str(error.value)
    assert "backbone checkpoint other.pth does not fit the model" in message
    assert "missing keys: blocks.2.norm1.weight" in message
    assert "cls_token: checkpoint (1, 1, 128) vs model (1, 1, 64)" in message
    assert "looks like embed_dim 128, 2 blocks, 0 register tokens, mlp feed-forward" in message


def meta_training_keys(state: dict[str, torch.Tensor], block_chunks: int) -> dict[str, torch.Tensor]:
    """A backbone state_dict as Meta's training code saves it (facebookresearch/dinov2 at b8931f7):
    DinoVisionTransformer with `block_chunks` (vision_transformer.py: chunk c holds blocks
    c*chunksize.. behind nn.Identity placeholders, so a block keeps its global index:
    `blocks.<chunk>.<block>.*`) inside the teacher's ModuleDict (`backbone.*`, beside `dino_head.*`)."""
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    chunksize = depth // block_chunks
    keys = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            block = int(key.split(".")[1])
            key = f"blocks.{block // chunksize}.{key.split('.', 1)[1]}"
        keys[f"backbone.{key}"] = value
    keys["dino_head.mlp.0.weight"] = torch.zeros(8, 64)  # the DINO head: not the backbone's
    keys["dino_head.last_layer.weight_g"] = torch.ones(16, 1)
    return keys


def test_meta_training_checkpoints_load_with_the_teacher_backbone_unchunked(make_tiny, tmp_path: Path, caplog) -> None:
    """train.py's teacher_checkpoint.pth ({"teacher": ...}) with block_chunks 2, and the SSLMetaArch
    state_dict (`teacher.backbone.*`) in an fvcore-style {"model": ...} file: both load strictly into
    the released architecture, and the log says what was taken."""
    import logging

    trained = make_tiny()
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.5)  # unlike the fresh model it is loaded into
    teacher = meta_training_keys(trained.state_dict(), block_chunks=2)
    assert "backbone.blocks.1.3.attn.qkv.weight" in teacher, "the layout of Meta's chunked blocks"
    torch.save({"teacher": teacher}, tmp_path / "teacher_checkpoint.pth")
    arch = {f"teacher.{key}": value for key, value in teacher.items()}
    arch |= {f"student.{key}": value for key, value in teacher.items()}
    torch.save({"model": arch, "iteration": 1249}, tmp_path / "model_0001249.pth")
    for name in ("teacher_checkpoint.pth", "model_0001249.pth"):
        model = make_tiny()
        with caplog.at_level(logging.INFO, logger="dinov2_ros"):
            load_backbone_state_dict(model, read_checkpoint(tmp_path / name), name)
        for key, value in trained.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key
        assert "numbered 2 block chunks (block_chunks) as 4 blocks" in caplog.text
    assert "took the backbone under 'backbone.', left out dino_head" in caplog.text
    assert "took the backbone under 'teacher.backbone.', left out student" in caplog.text


def test_a_checkpoint_holding_nan_or_inf_is_refused(make_tiny) -> None:
    state = make_tiny().state_dict()
    state["blocks.2.attn.qkv.weight"][0, 0] = float("nan")
    state["norm.bias"][1] = float("inf")
    with pytest.raises(CheckpointError, match=r"holds NaN or Inf in 2 tensors \(blocks.2.attn.qkv.weight, norm.bias\)"):
        load_backbone_state_dict(make_tiny(), state, "diverged.pth")


def test_register_mismatch_names_the_register_tokens(make_tiny) -> None:
    with pytest.raises(CheckpointError, match="unexpected keys: register_tokens"):
        load_backbone_state_dict(make_tiny(0), make_tiny(4).state_dict(), "reg.pth")
    with pytest.raises(CheckpointError, match="missing keys: register_tokens"):
        load_backbone_state_dict(make_tiny(4), make_tiny(0).state_dict(), "plain.pth")


def test_truncated_and_foreign_files_are_refused(make_tiny, tmp_path: Path) -> None:
    whole = tmp_path / "whole.pth"
    torch.save(make_tiny().state_dict(), whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth is a truncated zip archive .*delete it and fetch again"):
        read_checkpoint(truncated)
    from safetensors.torch import save_file

    save_file(make_tiny().state_dict(), tmp_path / "whole.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tmp_path / "whole.safetensors").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors is a truncated safetensors file"):
        read_checkpoint(cut)
    not_weights = tmp_path / "config.pth"
    torch.save({"lr": torch.tensor(0.1), "epochs": 3}, not_weights)
    with pytest.raises(CheckpointError, match="holds no state_dict of tensors"):
        read_checkpoint(not_weights)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": make_tiny().state_dict(), "optimizer": Path("/tmp")}, pickled)
    with pytest.raises(CheckpointError, match=r"holds Python objects besides tensors and numbers \(pathlib\.\w*Path\)"):
        read_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="does not exist; fetch it with `dinov2-ros weights fetch`"):
        read_checkpoint(tmp_path / "absent.pth")


def test_wrapped_state_dict_is_unwrapped(make_tiny, tmp_path: Path) -> None:
    state = make_tiny().state_dict()
    torch.save({"state_dict": state, "meta": {"epoch": 1}}, tmp_path / "wrapped.pth")
    assert read_checkpoint(tmp_path / "wrapped.pth").keys() == state.keys()


class NotANumber:
    """A class of the test module: any such object in a checkpoint could run code when unpickled."""


def with_numpy_1_module_names(path: Path) -> None:
    """Rewrite a torch.save file as numpy 1.x pickles numpy values (`numpy.core.multiarray.*`, which
    numpy 2 renamed `numpy._core`); the protocol-2 GLOBAL opcode names it in plain text."""
    import zipfile

    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info, data in members:
            if info.filename.endswith("/data.pkl"):
                assert b"cnumpy._core.multiarray\n" in data
                data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            target.writestr(info, data)


MMCV_META = {
    "epoch": np.int64(38400),
    "seed": np.uint32(2023),
    "best_score": np.float64(0.352),
    "scale": np.float32(1.5),
    "flip": np.bool_(False),
    "hist": np.linspace(0, 1, 5),
    "classes": np.arange(3, dtype=np.int16),
}


@pytest.mark.parametrize("numpy_names", ["numpy 2", "numpy 1.x"])
def test_mmcv_head_file_with_numpy_values_in_meta_loads_safely(numpy_names: str, tmp_path: Path) -> None:
    path = tmp_path / "dinov2_vits14_nyu_linear_head.pth"
    state = {
        "decode_head.conv_depth.weight": torch.randn(256, 768, 1, 1),
        "decode_head.conv_depth.bias": torch.randn(256),
    }
    torch.save({"meta": MMCV_META, "state_dict": state}, path)
    if numpy_names == "numpy 1.x":
        with_numpy_1_module_names(path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # what plain safe loading does with these files
    loaded = read_checkpoint(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    "intruder", [NotANumber(), np.array([NotANumber()], dtype=object), np.datetime64("2023-01-01")]
)
def test_other_objects_beside_numpy_values_are_refused_never_fully_unpickled(intruder, tmp_path: Path) -> None:
    path = tmp_path / "head.pth"
    torch.save({"meta": {**MMCV_META, "extra": intruder}, "state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match=r"holds Python objects besides tensors and numbers \(.+\), which safe"):
        read_checkpoint(path)


def test_files_that_are_no_checkpoint_are_named_for_what_they_are(make_tiny, tmp_path: Path) -> None:
    html = tmp_path / "dinov2_vits14_pretrain.pth"
    html.write_text("<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body>denied</body></html>")
    with pytest.raises(
        CheckpointError,
        match=r"is an HTML page \(titled '403 Forbidden'\), not a checkpoint: the download failed; delete it and fetch again",
    ):
        read_checkpoint(html)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth is empty \(0 bytes\), not a checkpoint"):
        read_checkpoint(empty)
    (tmp_path / "folder.pth").mkdir()
    with pytest.raises(CheckpointError, match=r"folder\.pth is a folder, not a checkpoint file"):
        read_checkpoint(tmp_path / "folder.pth")
    text = tmp_path / "notes.pth"
    text.write_text("weights are on the shared drive")
    with pytest.raises(
        CheckpointError, match=r"notes\.pth is not a PyTorch or safetensors checkpoint \(it starts with b'weights"
    ):
        read_checkpoint(text)

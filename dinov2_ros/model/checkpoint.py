"""Checkpoint formats: read files, convert official <-> Hugging Face keys, load strictly with clear errors.

Conversions are pure functions of a state_dict. Two Hugging Face namings exist: "hub" (files on the
Hugging Face hub, `attention.attention.query`, `mlp.weights_in`) and "modules" (transformers >= 5
modules, `attention.q_proj`, `mlp.gate_proj`); both are read, either can be written. Checkpoints of
Meta's training code (facebookresearch/dinov2 `dinov2/train`), which users who continue pretraining on
their parts have, are read too: `teacher_checkpoint.pth` ({"teacher": {"backbone.*", "dino_head.*",
...}}, as train.py's do_test saves it; `load_pretrained_weights` with checkpoint_key "teacher" reads
it), the SSLMetaArch state_dict (`teacher.backbone.*`), and blocks saved in chunks (`block_chunks: 4`
in the vitl14/vitg14 training configs: `blocks.<chunk>.<block>.*`, the block index kept global).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from dinov2_ros.model.heads.depth import LinearDepthHead, feature_channels
from dinov2_ros.model.safe_unpickling import load_weights_only
from dinov2_ros.weights.file_kind import not_a_checkpoint
from dinov2_ros.weights.variants import DEPTH_HEAD_KINDS, VARIANTS

LOG = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
HfNaming = Literal["hub", "modules"]
_MAX_LISTED = 8
_DAMAGED = "the file is truncated or corrupt: delete it and fetch it again"
# how torch's weights_only unpickler names what it refused
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+) was not an allowed global|but got <class '([\w.]+)'>")

_TOP_LEVEL = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "register_tokens": "embeddings.register_tokens",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
# per-block renames that are the same in both Hugging Face namings
_BLOCK_COMMON = {"ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1"}
_BLOCK_BY_NAMING = {
    "hub": {"attn.proj": "attention.output.dense", "mlp.w12": "mlp.weights_in", "mlp.w3": "mlp.weights_out"},
    "modules": {"attn.proj": "attention.o_proj", "mlp.w3": "mlp.down_proj"},
}
_QKV_NAMES = {
    "hub": ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
    "modules": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
}
_SWIGLU_IN_MODULES = ("mlp.gate_proj", "mlp.up_proj")
_OFFICIAL_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$")
_CHUNKED_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")  # blocks.<chunk>.<block>.<parameter>
# where Meta's training code keeps the backbone: SSLMetaArch.state_dict(), then the teacher's ModuleDict
_TRAINING_BACKBONE_PREFIXES = ("teacher.backbone.", "module.backbone.", "backbone.")
_HF_BLOCK = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it is loaded into, or a file that cannot be read."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes are not the model's."""


def read_checkpoint(path: str | os.PathLike[str]) -> StateDict:
    """Tensors of a .pth/.pt (unwrapping a {"state_dict": ...}, {"model": ...} or Meta's training
    {"teacher": ...} wrapper) or .safetensors file.

    Loads with torch's safe unpickler (weights_only) plus the numpy values mmcv-style files carry
    (safe_unpickling.py); never unpickles other objects. Raises CheckpointError naming what the file is
    when it is not a checkpoint (an HTML page saved by a failed download, an empty file, a folder, a
    truncated zip), holds other Python objects, or holds no tensors.
    """
    path = Path(path)
    problem = not_a_checkpoint(path)
    if problem is not None:
        raise CheckpointError(problem)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        data = load_weights_only(path)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(f"could not read checkpoint {path} ({error}); {_DAMAGED}") from error
        found = _REFUSED_GLOBAL.search(str(error))
        refused = f" ({found.group(1) or found.group(2)})" if found else ""
        raise CheckpointError(
            f"{path} holds Python objects besides tensors and numbers{refused}, which safe loading (weights_only) refuses and "
            "dinov2_ros never unpickles in full; convert it to a plain state_dict with "
            "`torch.save(model.state_dict(), path)` where it was made"
        ) from error
    except Exception as error:  # torch raises RuntimeError, EOFError... for truncated files
        raise CheckpointError(
            f"could not read checkpoint {path} ({type(error).__name__}: {error}); {_DAMAGED}"
        ) from error
    for wrapper in ("state_dict", "model", "teacher"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors; expected a PyTorch checkpoint of a model")
    return dict(data)


def _read_safetensors(path: Path) -> StateDict:
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        raise CheckpointError(
            f"{path} is a .safetensors file and the safetensors package is missing; "
            "install it with `python3 -m pip install safetensors`"
        ) from error
    try:
        return dict(load_file(path))
    except Exception as error:  # safetensors raises SafetensorError for damaged headers or data
        raise CheckpointError(
            f"could not read checkpoint {path} ({type(error).__name__}: {error}); {_DAMAGED}"
        ) from error


def is_hf_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for Hugging Face Dinov2 keys (`embeddings.*`, `encoder.layer.*`)."""
    return any(key.startswith(("embeddings.", "encoder.layer.")) for key in state_dict)


def official_to_hf(state_dict: Mapping[str, torch.Tensor], naming: HfNaming = "modules") -> StateDict:
    """Meta's keys -> Hugging Face Dinov2(WithRegisters)Model keys; qkv (and SwiGLU w12) split by rows."""
    if naming not in _BLOCK_BY_NAMING:
        raise ValueError(f"naming must be 'hub' or 'modules', got {naming!r}")
    renames = {**_BLOCK_COMMON, **_BLOCK_BY_NAMING[naming]}
    converted: StateDict = {}
    for key, value in state_dict.items():
        match = _OFFICIAL_BLOCK.match(key)
        if not match:
            converted[_TOP_LEVEL.get(key, key)] = value
            continue
        index, module, param = match.groups()
        prefix = f"encoder.layer.{index}."
        if module == "attn.qkv":
            for name, part in zip(_QKV_NAMES[naming], value.chunk(3, dim=0), strict=True):
                converted[f"{prefix}{name}.{param}"] = part.clone()
        elif module == "mlp.w12" and naming == "modules":
            for name, part in zip(_SWIGLU_IN_MODULES, value.chunk(2, dim=0), strict=True):
                converted[f"{prefix}{name}.{param}"] = part.clone()
        elif param == "gamma":
            converted[prefix + renames.get(f"{module}.gamma", f"{module}.gamma")] = value
        else:
            converted[f"{prefix}{renames.get(module, module)}.{param}"] = value
    return converted


def hf_to_official(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Hugging Face Dinov2(WithRegisters)Model keys (either naming) -> Meta's keys; q, k, v fused back."""
    inverse_top = {hf: official for official, hf in _TOP_LEVEL.items()}
    inverse_block = {hf: official for official, hf in _BLOCK_COMMON.items()}
    for table in _BLOCK_BY_NAMING.values():
        inverse_block.update({hf: official for official, hf in table.items()})
    fused_parts = {name: ("attn.qkv", i) for names in _QKV_NAMES.values() for i, name in enumerate(names)}
    fused_parts.update({name: ("mlp.w12", i) for i, name in enumerate(_SWIGLU_IN_MODULES)})
    converted: StateDict = {}
    pending: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in state_dict.items():
        match = _HF_BLOCK.match(key)
        if not match:
            converted[inverse_top.get(key, key)] = value
            continue
        index, module, param = match.groups()
        prefix = f"blocks.{index}."
        if param == "lambda1":
            converted[prefix + inverse_block.get(f"{module}.lambda1", f"{module}.lambda1")] = value
        elif module in fused_parts:
            fused, part = fused_parts[module]
            pending.setdefault(f"{prefix}{fused}.{param}", {})[part] = value
        else:
            converted[f"{prefix}{inverse_block.get(module, module)}.{param}"] = value
    for key, parts in pending.items():
        expected = 3 if ".attn.qkv." in key else 2
        if sorted(parts) != list(range(expected)):
            raise CheckpointError(
                f"incomplete Hugging Face checkpoint: {key} needs {expected} parts, found {len(parts)}"
            )
        converted[key] = torch.cat([parts[i] for i in range(expected)], dim=0)
    return converted


def training_to_released(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, list[str]]:
    """A backbone from Meta's training code in the released layout, and what was changed (for the log):
    the backbone's keys taken from under `teacher.backbone.` / `backbone.` (the heads left out), and
    chunked blocks (`blocks.<chunk>.<block>.*`) numbered as one list (`blocks.<block>.*`). A state_dict
    in the released layout comes back unchanged, with no notes."""
    converted, notes = dict(state_dict), []
    for prefix in _TRAINING_BACKBONE_PREFIXES:
        if any(key.startswith(prefix) for key in converted):
            left_out = sorted({key.split(".")[0] for key in converted if not key.startswith(prefix)})
            converted = {key[len(prefix) :]: value for key, value in converted.items() if key.startswith(prefix)}
            notes.append(
                f"took the backbone under '{prefix}'" + (f", left out {', '.join(left_out)}" if left_out else "")
            )
            break
    chunks = set()
    for key in list(converted):
        match = _CHUNKED_BLOCK.match(key)
        if match:
            chunk, block, rest = match.groups()
            chunks.add(chunk)
            converted[f"blocks.{block}.{rest}"] = converted.pop(key)
    if chunks:
        blocks = len({key.split(".")[1] for key in converted if key.startswith("blocks.")})
        notes.append(f"numbered {len(chunks)} block chunks (block_chunks) as {blocks} blocks")
    return converted, notes


def non_finite_keys(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys of the floating-point tensors that hold NaN or Inf."""
    return [
        key for key, value in state_dict.items() if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def describe_backbone_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short guess of the architecture a (Meta-layout) backbone checkpoint was written for."""
    if "cls_token" not in state_dict:
        return "no cls_token: not a DINOv2 backbone checkpoint"
    embed_dim = state_dict["cls_token"].shape[-1]
    depth = len({key.split(".")[1] for key in state_dict if key.startswith("blocks.")})
    registers = state_dict["register_tokens"].shape[1] if "register_tokens" in state_dict else 0
    ffn = "swiglu" if any(key.endswith("mlp.w12.weight") for key in state_dict) else "mlp"
    return f"embed_dim {embed_dim}, {depth} blocks, {registers} register tokens, {ffn} feed-forward"


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_strictly(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Load `state_dict` into `model` strictly; first raise CheckpointError naming missing and unexpected
    keys and differing shapes, if any."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    shapes = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listed(shapes)}")
    if problems:
        raise CheckpointMismatchError(f"{what} does not fit the model; " + "; ".join(problems))
    non_finite = non_finite_keys(state_dict)
    if non_finite:
        raise CheckpointError(
            f"{what} holds NaN or Inf in {len(non_finite)} tensors ({_listed(non_finite)}): a training run that "
            "diverged or a damaged file; it is not loaded. Use a checkpoint from before the divergence"
        )
    model.load_state_dict(state_dict, strict=True)


def load_backbone_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load Meta- (released or training-code) or Hugging Face-layout weights strictly; on mismatch say
    what the checkpoint looks like."""
    if is_hf_layout(state_dict):
        official = hf_to_official(state_dict)
    else:
        official, notes = training_to_released(state_dict)
        if notes:
            LOG.info("backbone checkpoint %s is from Meta's training code: %s", source, "; ".join(notes))
    try:
        load_strictly(model, official, f"backbone checkpoint {source}")
    except CheckpointMismatchError as error:
        raise CheckpointError(
            f"{error}. The checkpoint looks like {describe_backbone_state_dict(official)}; pick the backbone "
            "name that matches it"
        ) from None


def _backbones_fitting_head(in_channels: int) -> list[str]:
    return [
        f"{variant.name} {kind}"
        for variant in VARIANTS.values()
        for kind in DEPTH_HEAD_KINDS
        if variant.has_depth_heads and feature_channels(variant.embed_dim, len(variant.depth_taps(kind))) == in_channels
    ]


def load_depth_head_state_dict(head: LinearDepthHead, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a released head file (keys `decode_head.conv_depth.*`) strictly into a LinearDepthHead.

    A head trained on another backbone or with another number of taps is refused with the backbones
    whose features it does fit.
    """
    head_state = {key.removeprefix("decode_head."): value for key, value in state_dict.items()}
    weight = head_state.get("conv_depth.weight")
    expected = head.conv_depth.weight.shape
    if weight is not None and weight.dim() == 4 and weight.shape[1] != expected[1]:
        fits = _backbones_fitting_head(weight.shape[1]) or ["no released backbone"]
        raise CheckpointError(
            f"depth head {source} reads {weight.shape[1]} feature channels, which fits {' or '.join(fits)}; "
            f"this {head.backbone_name} head with taps {list(head.tap_indices)} needs {expected[1]} "
            f"(2 x embed_dim x {len(head.tap_indices)} taps). Use the head file for your backbone and kind"
        )
    load_strictly(head, head_state, f"depth head {source}")


def load_dinotxt_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, part: str) -> None:
    """Load a released dino.txt file strictly: `part` "vision head" (Meta's `visual_model.head`:
    `block_list.*`, `ln_final.*`) or "text encoder" (`text_model`: `backbone.*`, `head.linear_projection.*`).
    The other part's file, or a backbone checkpoint, is named as what it is."""
    looks_like = (
        "the text encoder file" if any(key.startswith("backbone.token_embedding") for key in state_dict)
        else "the vision head file" if any(key.startswith("block_list.") for key in state_dict)
        else "a backbone checkpoint" if "cls_token" in state_dict
        else None
    )  # fmt: skip
    try:
        load_strictly(module, state_dict, f"dino.txt {part} {source}")
    except CheckpointMismatchError as error:
        hint = f" It looks like {looks_like} of dino.txt." if looks_like and part not in looks_like else ""
        if looks_like == "a backbone checkpoint":
            hint = " It looks like a backbone checkpoint, not a dino.txt file."
        raise CheckpointError(
            f"{error}.{hint} Meta's files are {part.replace(' ', '_')}.pth of dinov2_vitl14_reg4_dinotxt_tet1280d20h24l "
            "(`dinov2-ros weights fetch dinotxt`)"
        ) from None

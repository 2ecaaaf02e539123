"""Linear depth heads: shapes, bins, clamping, known metric output, Meta's forward order, loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dinov2_ros.model import (
    CheckpointError,
    LinearDepthHead,
    create_backbone,
    create_depth_head,
    normalise_bins,
)
from dinov2_ros.model.perception_graph import PerceptionCore
from dinov2_ros.runtime.graph_spec import GraphSpec


def depth_core(backbone, head, height: int, width: int) -> PerceptionCore:
    """The backbone and the depth head alone as the exported core runs them: (B, 3, H, W) -> ((B, 1, H, W),)."""
    spec = GraphSpec("tiny", height, width, height, width, heads=("depth",), embed_dim=backbone.embed_dim)
    return PerceptionCore(spec, backbone, head)


def head_file(path: Path, in_channels: int, extra: dict[str, torch.Tensor] | None = None) -> dict:
    """A head file as Meta ships it: {"state_dict": {"decode_head.conv_depth.*": ...}}."""
    state = {
        "decode_head.conv_depth.weight": torch.randn(256, in_channels, 1, 1) * 0.01,
        "decode_head.conv_depth.bias": torch.randn(256) * 0.01,
        **(extra or {}),
    }
    torch.save({"meta": {"note": "test"}, "state_dict": state}, path)
    return state


def tiny_layers(taps: int, grid: tuple[int, int] = (4, 6), batch: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return [(torch.randn(batch, 64, *grid), torch.randn(batch, 64)) for _ in range(taps)]


@pytest.mark.parametrize("taps", [(3,), (0, 1, 2, 3)])
def test_output_is_metric_depth_at_the_input_size(taps: tuple[int, ...]) -> None:
    head = LinearDepthHead(64, taps, 0.001, 10.0)
    depth = head(tiny_layers(len(taps)), (56, 84))
    assert depth.shape == (2, 1, 56, 84)
    assert head.conv_depth.in_channels == 2 * 64 * len(taps)


def test_forward_follows_meta_order_upsample_then_bins() -> None:
    """Meta's BNHead order (resize x4, then 1x1 conv) equals ours (conv on the grid, then resize)."""
    head = LinearDepthHead(64, (0, 1), 0.001, 10.0)
    layers = tiny_layers(2)
    per_layer = [torch.cat((patch, cls[:, :, None, None].expand_as(patch)), 1) for patch, cls in layers]
    upsampled = [F.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False) for x in per_layer]
    logits = head.conv_depth(torch.cat(upsampled, 1))
    weights = torch.relu(logits) + 0.1
    weights = weights / weights.sum(1, keepdim=True)
    expected = torch.einsum("ikmn,k->imn", weights, torch.linspace(0.001, 10.0, 256)).unsqueeze(1)
    expected = F.interpolate(expected, size=(56, 84), mode="bilinear", align_corners=False).clamp(0.001, 10.0)
    with torch.no_grad():
        torch.testing.assert_close(head(layers, (56, 84)), expected.detach())


@pytest.mark.export
def test_exported_head_upsamples_the_bins_by_matrix_products() -> None:
    """The 256 bins are upsampled by two MatMuls (faster than ONNX Runtime's Resize); the one Resize left
    is the final one of the single depth map to the input size."""

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = LinearDepthHead(64, (0, 1), 0.001, 10.0)

        def forward(self, patch0, cls0, patch1, cls1):
            return self.head([(patch0, cls0), (patch1, cls1)], (56, 84))

    inputs = tuple(tensor for layer in tiny_layers(2) for tensor in layer)
    with torch.no_grad():
        program = torch.onnx.export(Head().eval(), inputs, dynamo=True, verbose=False)
    ops = [node.op_type for node in program.model_proto.graph.node]
    assert ops.count("Resize") == 1 and ops.count("MatMul") == 2, ops


def test_bin_normalisation() -> None:
    logits = torch.tensor([[-5.0, 0.0, 1.9]]).reshape(1, 3, 1, 1)
    weights = normalise_bins(logits).flatten()
    torch.testing.assert_close(weights, torch.tensor([0.1, 0.1, 2.0]) / 2.2)
    uniform = normalise_bins(-torch.rand(2, 256, 3, 3))
    torch.testing.assert_close(uniform, torch.full_like(uniform, 1 / 256))


@pytest.mark.parametrize(("dataset", "expected_max"), [("nyu", 10.0), ("kitti", 80.0)])
def test_head_with_known_weights_gives_known_depth(dataset: str, expected_max: float) -> None:
    head = create_depth_head("vits14", dataset, "linear", weights="random")
    assert (head.min_depth, head.max_depth) == (0.001, expected_max)
    torch.nn.init.zeros_(head.conv_depth.weight)
    torch.nn.init.zeros_(head.conv_depth.bias)
    layers = [(torch.randn(1, 384, 3, 5), torch.randn(1, 384))]
    with torch.no_grad():
        uniform = head(layers, (42, 70))
        torch.testing.assert_close(uniform, torch.full((1, 1, 42, 70), (0.001 + expected_max) / 2))
        head.conv_depth.bias[200] = 50.0  # most of the mass on bin 200
        centres = torch.linspace(0.001, expected_max, 256, dtype=torch.float64)
        expected = (50.1 * centres[200] + 0.1 * (centres.sum() - centres[200])) / (50.0 + 25.6)
        peaked = head(layers, (42, 70))
    torch.testing.assert_close(peaked, torch.full_like(peaked, float(expected)))


@pytest.mark.parametrize(("peak_bin", "expected"), [(0, 0.5), (255, 2.0)])
def test_extreme_depths_end_exactly_at_the_range(peak_bin: int, expected: float) -> None:
    head = LinearDepthHead(64, (0,), 0.5, 2.0)
    torch.nn.init.normal_(head.conv_depth.weight, std=100.0)
    with torch.no_grad():
        head.conv_depth.bias[peak_bin] = 1e30
        depth = head(tiny_layers(1), (28, 42))
    assert depth.min() >= 0.5 and depth.max() <= 2.0  # bilinear resizing alone overshoots by rounding
    torch.testing.assert_close(depth, torch.full_like(depth, expected))


def test_range_and_final_norm_are_configurable() -> None:
    head = create_depth_head("vitb14", "nyu", "linear4", "random", min_depth=0.2, max_depth=4.0, final_norm=False)
    assert (head.min_depth, head.max_depth, head.final_norm, head.tap_indices) == (0.2, 4.0, False, (2, 5, 8, 11))
    assert torch.equal(head.bin_centres, torch.linspace(0.2, 4.0, 256))
    assert create_depth_head("vitl14", "kitti", "linear4", "random").tap_indices == (4, 11, 17, 23)
    assert create_depth_head("vitg14", "nyu", "linear", "random").tap_indices == (39,)


@pytest.mark.parametrize("final_norm", [True, False])
def test_the_core_feeds_the_depth_head_with_its_final_norm(final_norm: bool, make_tiny) -> None:
    backbone = make_tiny()
    head = LinearDepthHead(64, (1, 3), 0.001, 10.0, final_norm=final_norm)
    torch.nn.init.normal_(head.conv_depth.weight, std=0.05)
    x = torch.randn(1, 3, 56, 70)
    with torch.no_grad():
        (depth,) = depth_core(backbone, head, 56, 70)(x)
        normed = head(backbone.get_intermediate_layers(x, (1, 3), norm=True), (56, 70))
    assert depth.shape == (1, 1, 56, 70)
    assert torch.equal(depth, normed) == final_norm


def meta_intermediate_layers(backbone, x: torch.Tensor, taps: tuple[int, ...], norm: bool) -> list:
    """Meta's `get_intermediate_layers(x, taps, reshape=True, return_class_token=True, norm=norm)`,
    written out from the blocks: (patch map (B, D, h, w), cls (B, D)) per tap."""
    tokens, taken = backbone.prepare_tokens(x), {}
    for index, block in enumerate(backbone.blocks):
        tokens = block(tokens)
        taken[index] = backbone.norm(tokens) if norm else tokens
    h, w = x.shape[-2] // 14, x.shape[-1] // 14
    return [(taken[i][:, 1:].reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2), taken[i][:, 0]) for i in taps]


def meta_linear_head(head: LinearDepthHead, layers: list, size: tuple[int, int]) -> torch.Tensor:
    """Meta's BNHead order: concatenate, upsample x4, 1x1 conv, "linear" bins, weighted centres, resize."""
    features = torch.cat([torch.cat((p, c[:, :, None, None].expand_as(p)), 1) for p, c in layers], 1)
    features = F.interpolate(features, scale_factor=4, mode="bilinear", align_corners=False)
    weights = torch.relu(head.conv_depth(features)) + 0.1
    weights = weights / weights.sum(1, keepdim=True)
    depth = torch.einsum("ikmn,k->imn", weights, torch.linspace(head.min_depth, head.max_depth, 256)).unsqueeze(1)
    return F.interpolate(depth, size=size, mode="bilinear", align_corners=False).clamp(head.min_depth, head.max_depth)


def test_default_head_reads_unnormalised_blocks_as_the_hub_builder_taps_them() -> None:
    """Meta's hub builder for the released heads taps get_intermediate_layers(..., norm=False)."""
    backbone = create_backbone("vits14", "random")
    head = create_depth_head("vits14", "nyu", "linear4", "random")
    assert head.final_norm is False and (head.min_depth, head.max_depth) == (0.001, 10.0)
    torch.nn.init.normal_(head.conv_depth.weight, std=0.05)
    x = torch.randn(1, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (depth,) = depth_core(backbone, head, 42, 56)(x)
        hub = meta_linear_head(head, meta_intermediate_layers(backbone, x, head.tap_indices, norm=False), (42, 56))
        normed = meta_linear_head(head, meta_intermediate_layers(backbone, x, head.tap_indices, norm=True), (42, 56))
    torch.testing.assert_close(depth, hub, rtol=1e-5, atol=1e-5)
    assert (depth - normed).abs().max() > 1e-2  # the choice matters: norm=True gives another depth


def test_pretrained_head_comes_from_the_cache(cache_dir: Path) -> None:
    cache_dir.mkdir()
    state = head_file(cache_dir / "dinov2_vits14_kitti_linear4_head.pth", 2 * 384 * 4)
    head = create_depth_head("vits14", "kitti", "linear4", "pretrained", cache_dir=cache_dir)
    assert torch.equal(head.conv_depth.weight, state["decode_head.conv_depth.weight"])
    assert not head.training


def test_head_for_another_backbone_says_which_backbone_it_fits(tmp_path: Path) -> None:
    head_file(tmp_path / "vitb_linear.pth", 2 * 768)
    with pytest.raises(
        CheckpointError,
        match=r"reads 1536 feature channels, which fits vitb14 linear; this vits14 head with taps "
        r"\[2, 5, 8, 11\] needs 3072",
    ):
        create_depth_head("vits14", "nyu", "linear4", tmp_path / "vitb_linear.pth")
    head_file(tmp_path / "3072.pth", 3072)
    with pytest.raises(CheckpointError, match="fits vits14 linear4 or vitg14 linear; this vitb14 head"):
        create_depth_head("vitb14", "nyu", "linear", tmp_path / "3072.pth")


def test_head_file_named_for_another_backbone_dataset_or_kind_is_refused(tmp_path: Path) -> None:
    """A vitg14 linear head and a vits14 linear4 head both read 3072 channels: the name tells them apart."""
    head_file(tmp_path / "dinov2_vitg14_nyu_linear_head.pth", 3072)
    with pytest.raises(
        ValueError,
        match=r"dinov2_vitg14_nyu_linear_head\.pth is named as Meta names a vitg14 nyu linear head .* but a "
        r"vits14 nyu linear4 head was requested; use dinov2_vits14_nyu_linear4_head\.pth",
    ):
        create_depth_head("vits14", "nyu", "linear4", tmp_path / "dinov2_vitg14_nyu_linear_head.pth")
    head_file(tmp_path / "dinov2_vits14_kitti_linear4_head.pth", 3072)
    with pytest.raises(ValueError, match=r"a vits14 kitti linear4 head .* but a vits14 nyu linear4 head"):
        create_depth_head("vits14", "nyu", "linear4", str(tmp_path / "dinov2_vits14_kitti_linear4_head.pth"))
    with pytest.raises(ValueError, match=r"a vits14 kitti linear4 head .* but a vits14_reg4 kitti linear4 head"):
        create_depth_head("vits14_reg4", "kitti", "linear4", tmp_path / "dinov2_vits14_kitti_linear4_head.pth")
    # the name that matches, and names outside Meta's convention, load by shape as before
    assert create_depth_head("vits14", "kitti", "linear4", tmp_path / "dinov2_vits14_kitti_linear4_head.pth")
    state = head_file(tmp_path / "my_finetuned_head.pth", 3072)
    head = create_depth_head("vits14", "nyu", "linear4", tmp_path / "my_finetuned_head.pth")
    assert torch.equal(head.conv_depth.weight, state["decode_head.conv_depth.weight"])


def test_head_file_with_missing_or_extra_keys_is_refused(tmp_path: Path) -> None:
    head_file(tmp_path / "extra.pth", 768, extra={"decode_head.bn.weight": torch.ones(768)})
    with pytest.raises(CheckpointError, match=r"does not fit the model; unexpected keys: bn\.weight"):
        create_depth_head("vits14", "nyu", "linear", tmp_path / "extra.pth")
    torch.save({"decode_head.conv_depth.weight": torch.zeros(256, 768, 1, 1)}, tmp_path / "no_bias.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: conv_depth\.bias"):
        create_depth_head("vits14", "nyu", "linear", tmp_path / "no_bias.pth")


def test_bad_arguments_are_refused(make_tiny) -> None:
    with pytest.raises(ValueError, match="Meta released no depth heads for vits14_reg4; use vits14"):
        create_depth_head("vits14_reg4", "nyu", "linear", "pretrained")
    with pytest.raises(ValueError, match="no weights given for vits14 nyu linear4 depth head"):
        create_depth_head("vits14")
    with pytest.raises(ValueError, match="dataset must be one of \\('nyu', 'kitti'\\), got 'diode'"):
        create_depth_head("vits14", "diode", "linear", "random")
    with pytest.raises(ValueError, match="kind must be one of \\('linear', 'linear4'\\), got 'dpt'"):
        create_depth_head("vits14", "nyu", "dpt", "random")
    with pytest.raises(ValueError, match="need 0 < min_depth < max_depth"):
        create_depth_head("vits14", "nyu", "linear", "random", min_depth=5.0, max_depth=5.0)
    head = LinearDepthHead(64, (0, 1), 0.001, 10.0)
    with pytest.raises(ValueError, match="reads blocks \\[0, 1\\], got 1 intermediate layers"):
        head(tiny_layers(1), (28, 42))
    with pytest.raises(ValueError, match="does not fit a backbone with 4 blocks and embed_dim 64"):
        depth_core(make_tiny(), LinearDepthHead(64, (4,), 0.001, 10.0), 28, 42)


@pytest.mark.export
def test_the_depth_core_exports_to_onnx_and_runs_in_onnx_runtime(make_tiny, tmp_path: Path) -> None:
    import onnxruntime

    backbone = make_tiny()
    head = LinearDepthHead(64, (1, 3), 0.001, 10.0)
    torch.nn.init.normal_(head.conv_depth.weight, std=0.05)
    model = depth_core(backbone, head, 56, 84).eval()
    x = torch.randn(1, 3, 56, 84)
    torch.onnx.export(model, (x,), str(tmp_path / "depth.onnx"), opset_version=18, dynamo=True)
    session = onnxruntime.InferenceSession(str(tmp_path / "depth.onnx"), providers=["CPUExecutionProvider"])
    (depth,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        (expected,) = model(x)
        expected = expected.numpy()
    assert depth.shape == (1, 1, 56, 84)
    assert abs(depth - expected).max() < 1e-4

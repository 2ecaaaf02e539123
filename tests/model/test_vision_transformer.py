"""Backbone outputs, input checks and pos-embed baking on tiny models."""

from __future__ import annotations

import pytest
import torch

from dinov2_ros.model import DinoVisionTransformer


@pytest.mark.parametrize(("num_register_tokens", "ffn"), [(0, "mlp"), (4, "mlp"), (4, "swiglu")])
def test_forward_features_shapes_and_final_norm(num_register_tokens: int, ffn: str, make_tiny) -> None:
    model = make_tiny(num_register_tokens, ffn)
    x = torch.randn(2, 3, 112, 84)
    with torch.no_grad():
        out = model.forward_features(x)
        last = model.get_intermediate_layers(x, [-1], norm=True)[0]
    assert out["cls_token"].shape == (2, 64)
    assert out["register_tokens"].shape == (2, num_register_tokens, 64)
    assert out["patch_tokens"].shape == (2, 8 * 6, 64)
    assert model.num_blocks == 4 and model.patch_size == 14 and model.embed_dim == 64
    # the patch map is the patch-token sequence in row-major order
    assert torch.equal(last[0].flatten(2).transpose(1, 2), out["patch_tokens"])
    assert torch.equal(last[1], out["cls_token"])


def test_intermediate_layers_follow_the_requested_order_and_norm(tiny_backbone: DinoVisionTransformer) -> None:
    x = torch.randn(1, 3, 56, 70)
    with torch.no_grad():
        normed = tiny_backbone.get_intermediate_layers(x, [3, 0], norm=True)
        raw = tiny_backbone.get_intermediate_layers(x, [3, 0], norm=False)
        first_only = tiny_backbone.get_intermediate_layers(x, [0], norm=False)
    assert [patch.shape for patch, _ in normed] == [(1, 64, 4, 5)] * 2
    assert torch.equal(raw[1][0], first_only[0][0])
    assert not torch.allclose(raw[0][0], raw[1][0])
    layer_norm = tiny_backbone.norm
    recomputed = layer_norm(raw[0][0].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(normed[0][0], recomputed)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 100, 98), "multiples of the patch size 14, got 100x98"),
        ((1, 4, 98, 98), "expected a \\(B, 3, H, W\\) image tensor, got shape \\(1, 4, 98, 98\\)"),
        ((3, 98, 98), "expected a \\(B, 3, H, W\\)"),
    ],
)
def test_bad_inputs_are_refused(shape: tuple[int, ...], message: str, tiny_backbone) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_backbone.forward_features(torch.zeros(shape))


@pytest.mark.parametrize(("indices", "message"), [([4], "in \\[-4, 4\\)"), ([1.0], "got 1.0"), ([], "empty")])
def test_bad_block_indices_are_refused(indices: list, message: str, tiny_backbone) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_backbone.get_intermediate_layers(torch.zeros(1, 3, 28, 28), indices)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads, got 64 and 3"):
        DinoVisionTransformer(64, 1, 3)
    with pytest.raises(ValueError, match="ffn must be 'mlp', 'swiglu' or 'swiglu_aligned'"):
        DinoVisionTransformer(64, 1, 2, ffn="relu")
    with pytest.raises(ValueError, match="img_size must be a multiple"):
        DinoVisionTransformer(64, 1, 2, img_size=500)


@pytest.mark.parametrize("num_register_tokens", [0, 4])
@pytest.mark.parametrize("size", [(224, 224), (154, 210), (518, 518)])
def test_baked_pos_embed_equals_on_the_fly(num_register_tokens: int, size: tuple[int, int], make_tiny) -> None:
    model = make_tiny(num_register_tokens)
    x = torch.randn(1, 3, *size)
    keys_before = list(model.state_dict())
    with torch.no_grad():
        on_the_fly = model.forward_features(x)
        model.bake_pos_embed(*size)
        baked = model.forward_features(x)
    assert list(model.state_dict()) == keys_before
    for name, value in on_the_fly.items():
        assert torch.equal(baked[name], value), name


def test_loading_weights_rebakes_the_pos_embed(make_tiny) -> None:
    model = make_tiny()
    model.bake_pos_embed(154, 210)
    other = make_tiny()
    with torch.no_grad():
        other.pos_embed.mul_(3.0)
    model.load_state_dict(other.state_dict())
    x = torch.randn(1, 3, 154, 210)
    with torch.no_grad():
        baked = model(x)["patch_tokens"]
        model.unbake_pos_embed()
        assert torch.equal(baked, model(x)["patch_tokens"])


def test_baked_model_refuses_other_sizes_until_unbaked(tiny_backbone: DinoVisionTransformer) -> None:
    tiny_backbone.bake_pos_embed(224, 224)
    with pytest.raises(ValueError, match="baked for input \\(224, 224\\), got input \\(252, 252\\)"):
        tiny_backbone.forward_features(torch.zeros(1, 3, 252, 252))
    tiny_backbone.unbake_pos_embed()
    assert tiny_backbone.forward_features(torch.zeros(1, 3, 252, 252))["patch_tokens"].shape == (1, 324, 64)


@pytest.mark.export
def test_baked_export_has_no_resize_and_runs_in_onnx_runtime(tiny_backbone: DinoVisionTransformer, tmp_path) -> None:
    """The exporter sees the baked pos-embed as a constant: no Resize node, and ONNX Runtime agrees."""
    import onnx
    import onnxruntime

    tiny_backbone.bake_pos_embed(154, 210)
    x = torch.randn(1, 3, 154, 210)
    path = tmp_path / "backbone.onnx"
    torch.onnx.export(tiny_backbone, (x,), str(path), opset_version=18, dynamo=True)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Resize" not in ops and "Conv" in ops
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = tiny_backbone(x)
    patch_tokens = next(out for out in outputs if out.shape == tuple(expected["patch_tokens"].shape))
    assert abs(patch_tokens - expected["patch_tokens"].numpy()).max() < 1e-4

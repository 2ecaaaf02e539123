"""PerceptionGraph composition: heads match the spec, the encoder runs once at the baked size, and
its outputs equal the parts run by hand."""

from __future__ import annotations

import pytest
import torch
from tiny_graphs import TINY_DIM, frames, tiny_graph, tiny_spec

from dinov2_ros.model import DinoVisionTransformer, LinearDepthHead
from dinov2_ros.model.camera_ends import DepthToCamera, Preprocess
from dinov2_ros.model.perception_graph import BareEncoder, PerceptionGraph


def backbone() -> DinoVisionTransformer:
    torch.manual_seed(0)
    model = DinoVisionTransformer(embed_dim=TINY_DIM, depth=2, num_heads=2, img_size=56)
    model.init_weights()
    return model


@pytest.mark.parametrize(
    ("spec", "depth_head", "message"),
    [
        (tiny_spec(heads=("depth",)), None, "depth_head is missing"),
        (tiny_spec(heads=("center",)), LinearDepthHead(TINY_DIM, (1,), 0.001, 10.0), "depth_head is given"),
        (tiny_spec(heads=("center",)), None, "detection_head is missing"),
        (tiny_spec(heads=("depth",), embed_dim=64), LinearDepthHead(TINY_DIM, (1,), 0.001, 10.0), "embed_dim=64"),
    ],
)
def test_heads_must_match_the_spec(spec, depth_head, message):
    with pytest.raises(ValueError, match=message):
        PerceptionGraph(spec, backbone(), depth_head, None)


@pytest.mark.parametrize("final_norm", [True, False])
def test_outputs_equal_the_parts_run_by_hand(final_norm):
    spec = tiny_spec(heads=("depth",), features=True, resize="letterbox")
    encoder = backbone()
    head = LinearDepthHead(TINY_DIM, (0, 1), 0.001, 10.0, final_norm=final_norm)
    graph = PerceptionGraph(spec, encoder, head).eval()
    images = torch.from_numpy(frames("structured", spec))
    with torch.no_grad():
        depth, features = graph(images)
        x = Preprocess(spec)(images)
        taps = encoder.get_intermediate_layers(x, (0, 1), norm=final_norm)
        expected_depth = DepthToCamera(spec)(head(taps, (spec.input_height, spec.input_width)))
        expected_features = encoder.get_intermediate_layers(x, (1,), norm=True)[0][0]
    torch.testing.assert_close(depth, expected_depth, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(features, expected_features, atol=1e-5, rtol=1e-5)


def test_encoder_is_baked_for_the_spec_size():
    graph = tiny_graph(tiny_spec(heads=("depth",)))
    with pytest.raises(ValueError, match="baked for input"):
        graph.backbone.get_intermediate_layers(torch.zeros(1, 3, 70, 56), (1,))
    bare = BareEncoder(backbone(), 56, 84)
    assert bare(torch.zeros(2, 3, 56, 84)).shape == (2, TINY_DIM, 4, 6)

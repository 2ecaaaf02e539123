"""GraphSpec: validation messages, the stable key, JSON round trip, and the exact camera <-> input mapping."""

from __future__ import annotations

import numpy as np
import pytest

from dinov2_ros.runtime.graph_spec import GraphSpec


def vga(**overrides) -> GraphSpec:
    fields = dict(variant="vits14", camera_height=480, camera_width=640, input_height=224, input_width=224)
    return GraphSpec(**(fields | overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_height": 225}, r"input_height must be a multiple of 14, got 225; use 224 or 238"),
        ({"resize": "crop"}, r"resize must be one of \('stretch', 'letterbox'\), got 'crop'"),
        ({"heads": ("depth", "segmentation")}, r"unknown \['segmentation'\]"),
        ({"heads": ("exemplar", "center")}, r"one detection head"),
        ({"heads": ()}, r"no output"),
        ({"camera_width": 0}, r"camera_width must be >= 1, got 0"),
        ({"heads": ("exemplar",), "max_prototypes": 0}, r"max_prototypes and max_classes must be >= 1"),
        ({"heads": ("exemplar",), "max_classes": 0}, r"max_prototypes and max_classes must be >= 1"),
    ],
)
def test_invalid_specs_say_what_to_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        vga(**overrides)


def test_key_is_canonical_and_names_every_static_choice():
    spec = vga(heads=("exemplar", "depth"), top_k=50, max_prototypes=32, features=True, resize="letterbox")
    assert spec.heads == ("depth", "exemplar")
    assert spec.key == "vits14-cam640x480-in224x224-letterbox-depth+exemplar-d384-k50-p32-c16-feat"
    assert spec == vga(heads=("depth", "exemplar"), top_k=50, max_prototypes=32, features=True, resize="letterbox")
    assert vga().key != vga(input_width=448).key != vga(resize="letterbox").key
    exemplar = vga(heads=("exemplar",))
    assert exemplar.key != vga(heads=("exemplar",), max_classes=8).key, "max_classes is baked into the graph"
    assert vga(heads=("depth",), max_classes=8) == vga(heads=("depth",)), "no exemplar head: max_classes is moot"
    assert exemplar.differences(vga(heads=("exemplar",), max_classes=8)) == ["max_classes 8 -> 16"]


def test_json_round_trip_and_refusal():
    spec = vga(heads=("depth", "center"), features=True)
    assert GraphSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="must have the fields"):
        GraphSpec.from_json('{"variant": "vits14"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        GraphSpec.from_json("vits14")


def test_io_specs_follow_the_heads():
    spec = vga(heads=("depth", "exemplar"), top_k=7, max_prototypes=3, features=True, input_width=448)
    inputs = {t.name: (t.dtype, t.shape) for t in spec.input_specs()}
    outputs = {t.name: (t.dtype, t.shape) for t in spec.output_specs()}
    assert inputs == {
        "images": (np.uint8, (None, 480, 640, 3)),
        "prototypes": (np.float32, (None, 3, 384)),  # per frame: one batch may mix classes
        "prototype_classes": (np.int32, (None, 3)),
    }
    assert outputs == {
        "depth": (np.float32, (None, 480, 640)),
        "detections": (np.float32, (None, 7, 6)),
        "masks": (np.float32, (None, 7, 16, 32)),
        "features": (np.float32, (None, 384, 16, 32)),
    }
    assert [t.name for t in vga(heads=("center",)).input_specs()] == ["images"]


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize(
    ("camera", "model_input"), [((480, 640), (224, 224)), ((480, 640), (448, 602)), ((720, 1280), (448, 448))]
)
def test_mapping_is_exact_and_invertible(resize, camera, model_input):
    spec = vga(
        camera_height=camera[0],
        camera_width=camera[1],
        input_height=model_input[0],
        input_width=model_input[1],
        resize=resize,
    )
    m = spec.mapping()
    corners = np.array([[0.0, 0.0], [camera[1], camera[0]]])
    mapped = m.camera_to_input(corners)
    # the image's outer edges land exactly on the content rectangle's edges
    np.testing.assert_allclose(
        mapped, [[m.offset_x, m.offset_y], [m.offset_x + m.content_width, m.offset_y + m.content_height]], atol=1e-9
    )
    assert m.offset_x >= 0 and m.offset_x + m.content_width <= model_input[1]
    assert m.offset_y >= 0 and m.offset_y + m.content_height <= model_input[0]
    points = np.random.default_rng(0).uniform(0, 1, (20, 2)) * (camera[1], camera[0])
    np.testing.assert_allclose(m.input_to_camera(m.camera_to_input(points)), points, atol=1e-9)
    if resize == "letterbox":
        assert m.content_width == model_input[1] or m.content_height == model_input[0]
        assert abs(m.scale_x - m.scale_y) < 1.0 / min(camera)  # aspect kept to within one pixel

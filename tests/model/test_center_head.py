import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dinov2_ros.model.checkpoint import CheckpointError
from dinov2_ros.model.heads.center import CenterHead, CenterHeadInfo, load_center_head, save_center_head


def hand_made_outputs() -> dict[str, torch.Tensor]:
    """One class-1 centre at row 2, col 3 of a 4x5 grid: offset (0.25, 0.5), size 2 x 3 patches."""
    heatmap = torch.full((1, 2, 4, 5), -10.0)
    heatmap[0, 1, 2, 3] = 5.0
    box = torch.zeros(1, 4, 4, 5)
    box[0, :, 2, 3] = torch.tensor([0.25, 0.5, math.log(2.0), math.log(3.0)])
    foreground = torch.full((1, 1, 4, 5), 3.0)
    foreground[0, 0, :, 4] = -3.0  # the last column is background
    return {"heatmap": heatmap, "box": box, "foreground": foreground}


def test_decode_turns_a_peak_into_its_box_score_class_and_mask():
    boxes, scores, classes, masks = CenterHead(8, 2, top_k=3).decode(hand_made_outputs())
    np.testing.assert_allclose(boxes[0, 0], [2.25 * 14, 1.0 * 14, 4.25 * 14, 4.0 * 14])  # centre (3.25, 2.5)
    assert scores[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())
    assert classes[0, 0] == 1.0 and scores[0, 1:].max() < 1e-4
    inside = masks[0, 0] > 0  # patch centres inside the box and in the foreground: rows 1-3, cols 2-3
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[1:4, 2:4] = True
    assert torch.equal(inside, expected)


def test_rows_beyond_classes_times_cells_are_padded_empty():
    boxes, scores, classes, masks = CenterHead(8, 2, top_k=50).decode(hand_made_outputs())
    assert boxes.shape == (1, 50, 4) and (scores[0, 40:] == 0).all() and (masks[0, 40:] < 0).all()
    assert (classes[0, 40:] == -1).all() and (boxes[0, 40:] == 0).all()


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="CenterHead needs positive sizes"):
        CenterHead(64, 0)


def _head() -> tuple[CenterHead, CenterHeadInfo]:
    torch.manual_seed(0)
    head = CenterHead(16, 3, hidden_dim=8, top_k=5).eval()
    return head, CenterHeadInfo("vits14:pretrained", (224, 308), "stretch", ("a", "b", "c"), 16, 8)


def test_a_saved_head_loads_back_with_the_same_outputs(tmp_path):
    head, info = _head()
    path = save_center_head(tmp_path / "head.pt", head, info)
    loaded, loaded_info = load_center_head(
        path, expected_encoder="vits14:pretrained", expected_input_size=(224, 308), top_k=5
    )
    assert loaded_info == info
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        for a, b in zip(head(x), loaded(x), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expected_encoder": "vitb14:pretrained"}, "trained on encoder 'vits14:pretrained' features, not 'vitb14"),
        ({"expected_input_size": (448, 448)}, r"trained at input size \(224, 308\).*not \(448, 448\)"),
        ({"expected_resize": "letterbox"}, "trained on 'stretch'-resized images, the graph uses 'letterbox'"),
    ],
)
def test_a_head_for_another_encoder_or_input_size_is_refused(tmp_path, kwargs, message):
    path = save_center_head(tmp_path / "head.pt", *_head())
    with pytest.raises(CheckpointError, match=message):
        load_center_head(path, **kwargs)


def test_foreign_stale_and_damaged_checkpoints_are_refused(tmp_path):
    path = save_center_head(tmp_path / "head.pt", *_head())
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "version": 0}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="checkpoint version 0, this dinov2_ros reads version 1"):
        load_center_head(tmp_path / "old.pt")
    torch.save({"state_dict": payload["state_dict"]}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is not a detection-head checkpoint"):
        load_center_head(tmp_path / "foreign.pt")
    state = dict(payload["state_dict"])
    del state["box.bias"]
    torch.save({**payload, "state_dict": state}, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: box\.bias"):
        load_center_head(tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match="does not exist; train one with `dinov2-ros train-detector`"):
        load_center_head(tmp_path / "nothing.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"cut\.pt is a truncated zip archive .*copy it again or retrain it"):
        load_center_head(tmp_path / "cut.pt")


def test_info_that_does_not_describe_the_head_is_refused(tmp_path):
    head, info = _head()
    with pytest.raises(ValueError, match="does not describe the head"):
        save_center_head(tmp_path / "head.pt", head, CenterHeadInfo(**{**info.__dict__, "class_names": ("a",)}))


@pytest.mark.export
def test_onnx_runtime_gives_the_same_detections_as_pytorch(tmp_path):
    head, _ = _head()
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        expected = head(x)
        torch.onnx.export(head, (x,), input_names=["patch_map"], opset_version=18, dynamo=True).save(
            str(tmp_path / "center.onnx")
        )
    session = ort.InferenceSession(str(tmp_path / "center.onnx"), providers=["CPUExecutionProvider"])
    for actual, reference in zip(session.run(None, {"patch_map": x.numpy()}), expected, strict=True):
        np.testing.assert_allclose(actual, reference.numpy(), atol=1e-4)

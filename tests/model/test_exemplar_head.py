import numpy as np
import onnxruntime as ort
import pytest
import torch

from dinov2_ros.model.heads.exemplar import ExemplarHead

E0, E1, BACKGROUND = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def blob_map() -> torch.Tensor:
    """A (1, 3, 6, 8) patch map: class-0 parts at rows 1-2 x cols 1-3 and rows 4-5 x cols 0-1, a class-1
    part at rows 3-4 x cols 5-6, table elsewhere. Token lengths vary: only directions should matter."""
    grid = np.tile(np.array(BACKGROUND), (6, 8, 1))
    grid[1:3, 1:4] = E0
    grid[4:6, 0:2] = E0
    grid[3:5, 5:7] = E1
    grid *= np.random.default_rng(0).uniform(0.5, 3.0, (6, 8, 1))
    return torch.tensor(grid, dtype=torch.float32).permute(2, 0, 1)[None]


# one frame's prototypes (1, P, D) and classes (1, P): the head takes them per frame
PROTOTYPES = torch.tensor([E0, E1, BACKGROUND, BACKGROUND])[None]
CLASSES = torch.tensor([[0, 1, -1, -1]], dtype=torch.int32)  # the table prototypes sit in empty slots


def test_each_part_is_one_instance_with_its_box_class_and_mask():
    boxes, scores, classes, masks = ExemplarHead(max_classes=4, top_k=6)(blob_map(), PROTOTYPES, CLASSES)
    assert boxes.shape == (1, 6, 4) and scores.shape == classes.shape == (1, 6) and masks.shape == (1, 6, 6, 8)
    found = {(tuple(b.tolist()), int(c)) for b, c, s in zip(boxes[0], classes[0], scores[0], strict=True) if s > 0.5}
    assert found == {((14.0, 14.0, 56.0, 42.0), 0), ((0.0, 56.0, 28.0, 84.0), 0), ((70.0, 42.0, 98.0, 70.0), 1)}
    assert scores[0, :3].min() > 0.999 and scores[0, 3:].max() < 1e-3  # uniform parts: one peak each
    first = masks[0, 0] > 0
    x1, y1, x2, y2 = (int(v) // 14 for v in boxes[0, 0])
    assert first[y1:y2, x1:x2].all() and first.sum() == (y2 - y1) * (x2 - x1)


def test_without_prototypes_every_row_is_empty():
    empty = torch.full((1, 4), -1, dtype=torch.int32)
    boxes, scores, classes, masks = ExemplarHead(max_classes=4, top_k=5)(blob_map(), PROTOTYPES, empty)
    assert (scores == 0).all() and (boxes == 0).all() and (masks < 0).all() and (classes == -1).all()


def test_class_ids_follow_the_prototype_classes_input_without_rebuilding():
    head = ExemplarHead(max_classes=4, top_k=6)
    swapped = torch.tensor([[3, 2, -1, -1]], dtype=torch.int32)
    _, scores, classes, _ = head(blob_map(), PROTOTYPES, swapped)
    assert sorted(classes[0][scores[0] > 0.5].tolist()) == [2.0, 3.0, 3.0]
    only_second = torch.tensor([[-1, 1, -1, -1]], dtype=torch.int32)
    _, scores, classes, _ = head(blob_map(), PROTOTYPES, only_second)
    assert classes[0][scores[0] > 0.5].tolist() == [1.0]


def test_each_frame_of_a_batch_is_matched_against_its_own_classes():
    """Frames of different cameras or nodes share a batch (a Triton server batching its clients)."""
    head = ExemplarHead(max_classes=4, top_k=6)
    classes_per_frame = torch.tensor([[0, 1, -1, -1], [-1, -1, -1, -1], [-1, 3, -1, -1]], dtype=torch.int32)
    _, scores, classes, _ = head(blob_map().repeat(3, 1, 1, 1), PROTOTYPES.repeat(3, 1, 1), classes_per_frame)
    found = [sorted(classes[frame][scores[frame] > 0.5].tolist()) for frame in range(3)]
    assert found == [[0.0, 0.0, 1.0], [], [3.0]]


def test_rows_beyond_the_grid_are_padded_empty():
    _, scores, classes, masks = ExemplarHead(max_classes=4, top_k=60)(blob_map(), PROTOTYPES, CLASSES)
    assert scores.shape == (1, 60) and (scores[0, 48:] == 0).all() and (masks[0, 48:] < 0).all()
    assert (classes[0, 48:] == -1).all()


@pytest.mark.parametrize(
    "kwargs", [{"max_classes": 0}, {"top_k": 0}, {"temperature": 0.0}, {"region_fraction": 1.5}, {"grow_steps": -1}]
)
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="ExemplarHead needs max_classes >= 1"):
        ExemplarHead(**kwargs)


@pytest.mark.export
def test_onnx_runtime_gives_the_same_detections_as_pytorch(tmp_path):
    torch.manual_seed(0)
    head = ExemplarHead(max_classes=4, top_k=8, temperature=0.5).eval()  # unsaturated: no ties in the order
    patch_map = blob_map().repeat(2, 1, 1, 1) + 0.05 * torch.randn(2, 3, 6, 8)
    inputs = (patch_map, PROTOTYPES.repeat(2, 1, 1), torch.cat([CLASSES, torch.tensor([[3, -1, -1, -1]])]).int())
    with torch.no_grad():
        expected = head(*inputs)
        program = torch.onnx.export(
            head, inputs, input_names=["patch_map", "prototypes", "prototype_classes"], opset_version=18, dynamo=True
        )
    program.save(str(tmp_path / "exemplar.onnx"))
    ops = [node.op_type for node in program.model_proto.graph.node]
    # exported, each growth step is one MaxPool (eager torch runs the slices): the peaks' one plus grow_steps
    assert ops.count("MaxPool") == 1 + head.grow_steps and "Slice" not in ops
    session = ort.InferenceSession(str(tmp_path / "exemplar.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(
        None, dict(zip(["patch_map", "prototypes", "prototype_classes"], (t.numpy() for t in inputs), strict=True))
    )
    for actual, reference in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(actual, reference.numpy(), atol=1e-4)

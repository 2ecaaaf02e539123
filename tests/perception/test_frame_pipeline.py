"""FramePipeline on real ONNX Runtime graphs: a tiny DINOv2 encoder with explicitly random weights,
the real linear depth head and exemplar head, exported once per camera size."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch

from dinov2_ros.export.core_export import export_graph
from dinov2_ros.model import DinoVisionTransformer, LinearDepthHead
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.depth import depth_to_metres
from dinov2_ros.perception.detection_decoding import camera_to_grid_affine, mask_to_camera
from dinov2_ros.perception.frame import CameraFrame
from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.object_tracking import ObjectTracker
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.perception.rejection import Rejection
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

DIM = 32
INPUT = 112
SIZES = ((120, 160), (96, 128))  # (height, width) of two cameras


def tiny_spec(height: int, width: int, resize: str = "stretch") -> GraphSpec:
    return GraphSpec(
        variant="tiny",
        camera_height=height,
        camera_width=width,
        input_height=INPUT,
        input_width=INPUT,
        resize=resize,
        heads=("depth", "exemplar"),
        top_k=8,
        max_prototypes=4,
        max_classes=4,
        embed_dim=DIM,
        features=True,
    )


class CountingBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend, recording the batch size of every call."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def _infer_impl(self, inputs):
        self.batches.append(len(inputs["images"]))
        return super()._infer_impl(inputs)


@pytest.fixture(scope="module")
def graph_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("graphs")
    files = {}
    for height, width in SIZES:
        spec = tiny_spec(height, width)
        torch.manual_seed(0)
        backbone = DinoVisionTransformer(embed_dim=DIM, depth=2, num_heads=2, img_size=INPUT)
        backbone.init_weights()
        graph = PerceptionGraph(
            spec, backbone, LinearDepthHead(DIM, (0, 1), 0.001, 10.0), ExemplarHead(max_classes=4, top_k=8)
        )
        files[(height, width)] = export_graph(graph.eval(), directory / f"{spec.key}.onnx")
    return files


@pytest.fixture
def backends(graph_files):
    opened = {}

    def open_backend(height: int, width: int) -> CountingBackend:
        opened[(height, width)] = CountingBackend(graph_files[(height, width)], threads=1)
        return opened[(height, width)]

    return open_backend, opened


def make_pipeline(backends, **kwargs) -> FramePipeline:
    return FramePipeline(backends[0], PrototypeStore("tiny", (INPUT, INPUT), DIM), max_classes=4, **kwargs)


def scene_frame(camera: str, size=SIZES[0], index: int = 0, with_depth: bool = True) -> tuple[CameraFrame, object]:
    height, width = size
    scene = SyntheticSceneGenerator(7, width, height).render(index)
    model = PinholeCameraModel(scene.K, np.zeros(5), width, height)
    depth = scene.depth if with_depth else None
    return CameraFrame(camera, scene.image_rgb, depth, model, stamp=index), scene


def test_one_infer_call_per_resolution_and_results_in_frame_order(backends):
    pipeline = make_pipeline(backends)
    frames = [scene_frame("a")[0], scene_frame("b", SIZES[1])[0], scene_frame("c", index=1)[0]]
    results = pipeline.process(frames)
    opened = backends[1]
    assert opened[SIZES[0]].batches == [2] and opened[SIZES[1]].batches == [1]
    assert [r.frame.camera for r in results] == ["a", "b", "c"]
    for result, frame in zip(results, frames, strict=True):
        assert result.depth.shape == frame.size and result.depth.dtype == np.float32
        valid = result.depth[np.isfinite(result.depth)]
        assert valid.size > 0 and np.all((valid >= 0.001) & (valid <= 10.0))
        assert result.inference_s > 0
    assert set(pipeline.graphs) == set(SIZES)


def test_batching_does_not_change_results(backends):
    pipeline = make_pipeline(backends)
    first, second = scene_frame("a")[0], scene_frame("b", index=1)[0]
    together = pipeline.process([first, second])
    alone = pipeline.process([second])
    np.testing.assert_allclose(together[1].depth, alone[0].depth, rtol=1e-5, atol=1e-5)


def test_taught_class_is_detected_with_mask_and_3d_pose(backends):
    pipeline = make_pipeline(backends, score_threshold=0.5)
    frame, scene = scene_frame("a")
    assert pipeline.process([frame])[0].detections == []  # nothing taught yet
    box = scene.boxes[0]
    class_id = pipeline.add_class_from_box("a", "part", box)
    assert pipeline.labels() == {class_id: "part"}

    detections = pipeline.process([frame])[0].detections
    assert detections, "the part taught from this frame must be found on it"
    best = max(detections, key=lambda d: d.score)
    assert (best.class_id, best.label) == (class_id, "part") and 0.5 <= best.score <= 1.0
    x1, y1, x2, y2 = best.box
    assert 0 <= x1 < x2 <= SIZES[0][1] and 0 <= y1 < y2 <= SIZES[0][0]
    assert best.mask.shape == SIZES[0] and best.mask.dtype == bool and best.mask.any()
    overlap = (best.box[:2] < box[2:]).all() and (box[:2] < best.box[2:]).all()
    assert overlap, f"detection {best.box} does not overlap the taught box {box}"
    # sensor depth of the synthetic scene: the part's face lies in front of the table
    assert best.centre is not None and best.no_pose_reason == ""
    table_z = float(np.nanmax(scene.depth))
    assert 0.5 < best.centre[2] <= table_z and np.all(best.size > 0)


def test_without_camera_model_detections_have_a_reason_not_a_pose(backends):
    pipeline = make_pipeline(backends)
    frame, scene = scene_frame("a")
    pipeline.process([frame])
    pipeline.add_class_from_box("a", "part", scene.boxes[0])
    bare = CameraFrame("a", frame.image_rgb)
    detections = pipeline.process([bare])[0].detections
    assert detections and all(d.centre is None and "intrinsics" in d.no_pose_reason for d in detections)


def test_classes_change_between_frames_and_errors_explain(backends):
    pipeline = make_pipeline(backends)
    frame, scene = scene_frame("a")
    with pytest.raises(ValueError, match="no processed frame from camera 'a'"):
        pipeline.add_class_from_box("a", "part", scene.boxes[0])
    pipeline.process([frame])
    with pytest.raises(ValueError, match=r"box .* must satisfy 0 <= x1 < x2 <= 160"):
        pipeline.add_class_from_box("a", "part", [50, 10, 40, 30])
    pipeline.add_class_from_box("a", "part", scene.boxes[0])
    assert pipeline.process([frame])[0].detections
    pipeline.remove_class("part")
    assert pipeline.labels() == {} and pipeline.process([frame])[0].detections == []
    with pytest.raises(ValueError, match="no class 'part' to remove"):
        pipeline.remove_class("part")


def test_a_class_that_does_not_fit_the_graph_leaves_the_store_unchanged(backends):
    pipeline = make_pipeline(backends)
    pipeline.max_classes = 1
    frame, scene = scene_frame("a")
    pipeline.process([frame])
    pipeline.add_class_from_box("a", "first", scene.boxes[0])
    with pytest.raises(ValueError, match="exceeds the head's 1 classes"):
        pipeline.add_class_from_box("a", "second", scene.boxes[0])
    assert pipeline.labels() == {0: "first"}
    assert pipeline.process([frame])[0].detections  # still runs with the old classes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_rgb": np.zeros((120, 160, 3), np.float32)}, r"must be \(H, W, 3\) uint8 RGB"),
        ({"image_rgb": np.zeros((120, 160), np.uint8)}, r"must be \(H, W, 3\) uint8 RGB"),
        ({"depth": np.zeros((60, 80), np.float32)}, "depth image is 80x60 but the camera image is 160x120"),
        (
            {"camera_model": PinholeCameraModel(np.diag([100.0, 100.0, 1.0]), np.zeros(5), 640, 480)},
            "camera_info is for 640x480 but the image is 160x120",
        ),
    ],
)
def test_camera_frame_refuses_inconsistent_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CameraFrame("cam", **({"image_rgb": np.zeros((120, 160, 3), np.uint8)} | kwargs))


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_mask_maps_a_patch_back_onto_its_camera_pixels(resize):
    """One positive patch of the grid covers exactly the camera pixels that map into it."""
    spec = tiny_spec(96, 160, resize)
    mapping = spec.mapping()
    grid_h, grid_w = spec.grid
    row, col = grid_h // 2, grid_w // 2
    logits = np.full((grid_h, grid_w), -5.0, np.float32)
    logits[row, col] = 5.0
    mask = mask_to_camera(logits, np.array([0, 0, 160, 96]), camera_to_grid_affine(spec), (96, 160))
    # reference: camera pixel centres mapped into model-input pixels, then to the patch they fall in
    v, u = np.mgrid[0:96, 0:160]
    xy = mapping.camera_to_input(np.stack([u + 0.5, v + 0.5], axis=-1))
    inside = (xy[..., 0] // 14 == col) & (xy[..., 1] // 14 == row)
    # bilinear interpolation moves the 0-crossing half a patch at most: compare the cores
    core = (np.abs(xy[..., 0] - (col + 0.5) * 14) < 3.5) & (np.abs(xy[..., 1] - (row + 0.5) * 14) < 3.5)
    assert mask[core].all() and core.any()
    assert not mask[~inside].any()


def test_a_graph_that_cannot_be_opened_is_not_retried_for_every_frame():
    attempts = []

    def failing(height: int, width: int):
        attempts.append((height, width))
        raise FileNotFoundError("no ONNX file at /nowhere.onnx; create it with `dinov2-ros export`")

    pipeline = FramePipeline(failing, PrototypeStore("tiny", (INPUT, INPUT), DIM))
    frame = CameraFrame("cam", np.zeros((120, 160, 3), np.uint8))
    for _ in range(2):  # the frame is refused with the reason, in its place; the opening is not retried
        (refused,) = pipeline.process([frame])
        assert isinstance(refused, Rejection) and refused.category == "graph failed"
        assert "the graph for 160x120 frames could not be opened: FileNotFoundError: no ONNX file" in refused.detail
    assert attempts == [(120, 160)]


class OverflowingBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend with the first detection row's box set to inf, as an fp16 TensorRT
    engine that overflows would return (TensorRT cannot run here, so this stands in for it)."""

    def _infer_impl(self, inputs):
        outputs = super()._infer_impl(inputs)
        outputs["detections"][:, 0, 2] = np.inf
        return outputs


def test_a_non_finite_detection_row_is_dropped_and_the_rest_of_the_frame_kept(graph_files):
    def open_backend(height: int, width: int) -> OnnxRuntimeBackend:
        return OnnxRuntimeBackend(graph_files[(height, width)], threads=1)

    def open_overflowing(height: int, width: int) -> OnnxRuntimeBackend:
        return OverflowingBackend(graph_files[(height, width)], threads=1)

    frame, scene = scene_frame("a")
    results = []
    for opener in (open_backend, open_overflowing):
        pipeline = FramePipeline(
            opener, PrototypeStore("tiny", (INPUT, INPUT), DIM), max_classes=4, score_threshold=0.5
        )
        pipeline.process([frame])
        pipeline.add_class_from_box("a", "part", scene.boxes[0])
        results.append(pipeline.process([frame])[0])
    clean, overflowed = results
    assert clean.detections, "the taught part must be found on the frame it was taught from"
    assert len(overflowed.detections) == len(clean.detections) - 1
    assert all(np.isfinite(d.box).all() for d in overflowed.detections)
    np.testing.assert_array_equal(np.isnan(overflowed.depth), np.isnan(clean.depth))


def test_frames_of_open_sizes_run_while_another_size_is_being_opened(backends):
    """Opening a graph may export for minutes: `process` of the sizes already open never waits for it."""
    open_backend, _ = backends
    exporting, release = threading.Event(), threading.Event()

    def slow_for_the_second_size(height: int, width: int):
        if (height, width) == SIZES[1]:
            exporting.set()
            assert release.wait(timeout=30.0), "the test never released the export"
        return open_backend(height, width)

    pipeline = FramePipeline(slow_for_the_second_size, PrototypeStore("tiny", (INPUT, INPUT), DIM), max_classes=4)
    pipeline.open_graph(*SIZES[0])
    opening = threading.Thread(target=pipeline.open_graph, args=SIZES[1])
    opening.start()
    try:
        assert exporting.wait(timeout=10.0)
        frame, _ = scene_frame("front", SIZES[0])
        start = time.perf_counter()
        results = [pipeline.process([frame]) for _ in range(5)]
        assert time.perf_counter() - start < 5.0 and all(len(r) == 1 for r in results)
        assert set(pipeline.graphs) == {SIZES[0]}, "the second size is not open until its opener returns"
    finally:
        release.set()
        opening.join(timeout=30.0)
    assert set(pipeline.graphs) == set(SIZES)


class AppearingBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend; from its third call on, a copy of the best detection row 40 px to
    the right in the last row: a part that comes into view (random weights find no new part on the
    same frame, so the graph's own output is shifted, as a moving part's would be)."""

    calls = 0

    def _infer_impl(self, inputs):
        outputs = super()._infer_impl(inputs)
        AppearingBackend.calls += 1
        if AppearingBackend.calls >= 3:
            rows = outputs["detections"]
            best = rows[:, :, 4].argmax(axis=1)
            for frame, index in enumerate(best):
                rows[frame, -1] = rows[frame, index] + (40, 0, 40, 0, 0, 0)
                outputs["masks"][frame, -1] = outputs["masks"][frame, index]
        return outputs


class CountingLifter(ObjectLifter):
    """The real lifter, counting the boxes it is asked to lift or check."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: list[int] = []

    def can_lift(self, depth_m, camera, boxes, masks=None):
        self.boxes.append(len(boxes))
        return super().can_lift(depth_m, camera, boxes, masks)


def test_tracking_runs_in_the_pipeline_and_only_published_detections_are_lifted(graph_files):
    AppearingBackend.calls = 0
    lifter, tracker = CountingLifter(), ObjectTracker(lost_timeout_s=1.0)
    pipeline = FramePipeline(
        lambda height, width: AppearingBackend(graph_files[(height, width)], threads=1),
        PrototypeStore("tiny", (INPUT, INPUT), DIM),
        max_classes=4,
        lifter=lifter,
        tracker=tracker,
    )
    frame, scene = scene_frame("a")
    timed = [dataclasses.replace(frame, time_s=t) for t in (0.0, 0.1, 0.2, 0.3)]
    pipeline.process(timed[:1])
    pipeline.add_class_from_box("a", "part", scene.boxes[0])
    assert pipeline.process(timed[1:2])[0].detections == [], "a part's first sighting is not published"
    lifter.boxes.clear()
    first = pipeline.process(timed[2:3])[0].detections  # confirmed; a new part comes into view, unconfirmed
    assert first and [d.track_id for d in first] == list(range(1, len(first) + 1))
    assert lifter.boxes == [len(first)], "the unconfirmed detection is neither published nor lifted"
    confirmed = pipeline.process(timed[3:4])[0].detections
    assert len(confirmed) == len(first) + 1 and confirmed[-1].track_id == len(first) + 1
    assert lifter.boxes[-1] == len(confirmed), "once confirmed, it is published and lifted"


def test_a_depth_image_without_one_valid_pixel_gives_no_3d_objects_while_2d_ones_stay(backends):
    pipeline = make_pipeline(backends)
    frame, scene = scene_frame("a")
    pipeline.process([frame])
    pipeline.add_class_from_box("a", "part", scene.boxes[0])
    assert pipeline.process([frame])[0].without_3d is None
    for invalid in (
        depth_to_metres(np.zeros(scene.depth.shape, np.uint16), "16UC1"),
        np.full_like(scene.depth, np.nan),
    ):
        blind = dataclasses.replace(frame, depth=invalid, depth_source="depth image on /d/depth/image")
        (result,) = pipeline.process([blind])
        assert result.detections and all(d.centre is None for d in result.detections)
        assert (result.without_3d.category, result.without_3d.problem) == ("depth", "no valid depth")
        assert "depth image on /d/depth/image has no valid pixel" in result.without_3d.detail
    (uncalibrated,) = pipeline.process([dataclasses.replace(frame, camera_model=None)])
    assert uncalibrated.without_3d.problem == "uncalibrated" and uncalibrated.detections


class FailingBackend(OnnxRuntimeBackend):
    def _infer_impl(self, inputs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_failing_graph_call_costs_its_own_frames_only(graph_files):
    def open_backend(height: int, width: int) -> OnnxRuntimeBackend:
        kind = FailingBackend if (height, width) == SIZES[1] else OnnxRuntimeBackend
        return kind(graph_files[(height, width)], threads=1)

    pipeline = FramePipeline(open_backend, PrototypeStore("tiny", (INPUT, INPUT), DIM), max_classes=4)
    good, bad = pipeline.process([scene_frame("a")[0], scene_frame("b", SIZES[1])[0]])
    assert good.depth is not None
    assert isinstance(bad, Rejection) and bad.category == "inference" and "illegal memory access" in bad.detail

"""Depth completion against the tabletop scenes' exact depth: the model's depth fitted to the sensor's
and filling its holes, and parts that return no depth (shiny, black, transparent) still lifted.

Random weights predict no depth, so the model's depth here is a STAND-IN made from the true depth by a
known scale, shift and noise (`tabletop_scenes.stand_in_model_depth`): it tests the fit and everything after it, not
the network. The stand-in is sharper than a real network's depth at part edges, so the errors below
are a lower bound on what real weights give. The node's own path (real graph output, the published
topic) is in tests/ros/test_perception_node.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_graphs import tiny_graph, tiny_spec

from dinov2_ros.export.core_export import export_graph
from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.depth_completion import MIN_INLIER_FRACTION, complete_depth, fit_model_depth
from dinov2_ros.perception.frame import CameraFrame
from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.perception.oriented_box import OrientedBox, fit_from_depths
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.tools.evaluation.replayed_graph import ReplayedGraph
from dinov2_ros.tools.scenes import tabletop_scenes
from dinov2_ros.tools.scenes.tabletop_scenes import render_tabletop, visible_boxes

TEN_PARTS = [
    ("bar", -0.2, -0.08, 10), ("plate", -0.05, -0.08, 40), ("brick", 0.1, -0.08, -30), ("cube", 0.22, -0.08, 0),
    ("bar", -0.2, 0.05, 80), ("plate", -0.05, 0.05, -60), ("brick", 0.1, 0.05, 20), ("cube", 0.22, 0.05, 45),
    ("bar", -0.12, 0.14, -20), ("plate", 0.12, 0.14, 70),
]  # fmt: skip
SHINY = (1, 4, 6)  # a plate, a bar and a brick return no depth
SCALE, SHIFT_M, MODEL_NOISE_M = 1.08, 0.04, 0.003  # sensor = SCALE * model + SHIFT_M


def stand_in_model_depth(true_depth: np.ndarray, seed: int = 0) -> np.ndarray:
    return tabletop_scenes.stand_in_model_depth(true_depth, SCALE, SHIFT_M, MODEL_NOISE_M, seed)


def shiny_scene(seed: int = 2):
    return render_tabletop(TEN_PARTS, tilt_deg=15.0, depth_noise_m=0.001, seed=seed, no_return=SHINY)


def test_the_fit_recovers_the_scale_and_shift_despite_gross_outliers():
    scene = shiny_scene()
    model = stand_in_model_depth(scene.true_depth)
    sensor = scene.depth.copy()
    sensor[:, :160] = 3.0  # a quarter of the view: multipath returns far behind the table
    fit = fit_model_depth(model, sensor)
    assert fit.trusted, fit.reason
    assert fit.scale == pytest.approx(SCALE, abs=0.01) and fit.shift_m == pytest.approx(SHIFT_M, abs=0.005)
    assert 0.6 < fit.inlier_fraction < 0.8 and fit.residual_m < 0.005


def test_holes_are_filled_with_the_fitted_depth_and_the_rest_is_the_sensors():
    scene = shiny_scene()
    model = stand_in_model_depth(scene.true_depth)
    completed, filled = complete_depth(scene.depth, model, fit_model_depth(model, scene.depth))
    holes = np.isnan(scene.depth)
    np.testing.assert_array_equal(completed[~holes], scene.depth[~holes])
    assert np.array_equal(filled, holes), "every hole lies on the table's depths: all are filled"
    error = np.abs(completed[holes] - scene.true_depth[holes])
    assert np.median(error) < 0.004 and np.percentile(error, 95) < 0.008, (np.median(error), np.percentile(error, 95))


def test_a_model_that_disagrees_leaves_the_holes_empty_and_says_why():
    scene = shiny_scene()
    unrelated = np.random.default_rng(1).uniform(0.3, 3.0, scene.depth.shape).astype(np.float32)
    fit = fit_model_depth(unrelated, scene.depth)
    assert not fit.trusted and f"at least {MIN_INLIER_FRACTION:.0%}" in fit.reason
    completed, filled = complete_depth(scene.depth, unrelated, fit)
    assert not filled.any() and np.array_equal(np.isnan(completed), np.isnan(scene.depth))
    empty = fit_model_depth(unrelated, np.full_like(scene.depth, np.nan))
    assert not empty.trusted and "only 0 pixels" in empty.reason


@pytest.fixture(scope="module")
def vga_backend(tmp_path_factory):
    spec = tiny_spec(camera_height=480, camera_width=640, input_height=336, input_width=448, top_k=12)
    path = export_graph(tiny_graph(spec), tmp_path_factory.mktemp("vga") / "vga.onnx")
    with OnnxRuntimeBackend(path, spec) as backend:
        yield backend


def _lift(backend, scene, fill_depth_holes: bool):
    """The pipeline's detections of the scene's visible parts (true boxes and masks as the graph's
    detections, the stand-in as its depth), by part index."""
    visible, boxes = visible_boxes(scene)
    graph = ReplayedGraph(
        backend, scene.image_rgb, boxes, [scene.masks[i] for i in visible], stand_in_model_depth(scene.true_depth)
    )
    spec = graph.spec
    store = PrototypeStore("test:replayed", (spec.input_height, spec.input_width), spec.embed_dim)
    pipeline = FramePipeline(lambda height, width: graph, store, fill_depth_holes=fill_depth_holes)
    camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
    (result,) = pipeline.process([CameraFrame("camera", scene.image_rgb, scene.depth, camera)])
    by_box = {tuple(np.round(box, 1)): index for index, box in zip(visible, boxes, strict=True)}
    return result, {by_box[tuple(np.round(d.box, 1))]: d for d in result.detections}


def test_parts_without_sensor_depth_get_the_pose_the_true_depth_gives():
    """With the parts' exact masks: the shiny ones have no usable pose from the sensor's depth, and from the
    completed depth about the pose the exact depth gives them: centre within 12 mm, height above the
    table within three times the stand-in's per-pixel noise (that noise widens the fitted extents and
    turns the 15 mm plate's footprint) (the box fit's own error
    against the true cuboids is eval_orientation's subject, not this one's)."""
    scene = shiny_scene()
    camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
    model = stand_in_model_depth(scene.true_depth)
    completed, _ = complete_depth(scene.depth, model, fit_model_depth(model, scene.depth))
    visible, boxes = visible_boxes(scene)
    masks = [scene.masks[i] for i in visible]
    fits = {
        name: dict(zip(visible, fit_from_depths(depth, camera, masks, boxes), strict=True))
        for name, depth in (("sensor", scene.depth), ("completed", completed), ("truth", scene.true_depth))
    }
    for index in SHINY:
        from_sensor = fits["sensor"][index]  # no return: no pose, or one of whatever else its box holds
        assert isinstance(from_sensor, str) or np.linalg.norm(from_sensor.center - fits["truth"][index].center) > 0.02
        from_completed, from_truth = fits["completed"][index], fits["truth"][index]
        assert isinstance(from_completed, OrientedBox) and isinstance(from_truth, OrientedBox)
        assert np.linalg.norm(from_completed.center - from_truth.center) < 0.012, index
        assert abs(from_completed.size[2] - from_truth.size[2]) < 3 * SCALE * MODEL_NOISE_M, index


@pytest.mark.export
def test_the_pipeline_lifts_parts_from_the_completed_depth_and_says_so(vga_backend):
    """The frame path end to end on the graph's coarse masks (a 24 x 32 patch grid: they take in some
    table around each part, so every part's centre is off by up to ~2 cm here): the shiny parts are
    marked as lifted from filled depth and are placed better than from the sensor's depth alone,
    where their masks' table pixels give them the table's depth."""
    scene = shiny_scene()
    without, sensor_only = _lift(vga_backend, scene, fill_depth_holes=False)
    result, detections = _lift(vga_backend, scene, fill_depth_holes=True)
    assert without.completed_depth is None and result.depth_fit.trusted
    assert result.object_depth is result.completed_depth
    assert set(detections) == set(range(len(TEN_PARTS)))

    def error(detection, index):
        return np.linalg.norm(detection.centre - scene.parts[index].center)

    for index, detection in detections.items():
        assert (detection.filled_depth_fraction > 0.5) == (index in SHINY), (index, detection.filled_depth_fraction)
        assert error(detection, index) < 0.025, (index, error(detection, index))
    shiny_errors = [error(detections[i], i) for i in SHINY]
    sensor_errors = [error(sensor_only[i], i) if sensor_only[i].centre is not None else np.inf for i in SHINY]
    assert np.mean(shiny_errors) < np.mean(sensor_errors), (shiny_errors, sensor_errors)


def test_a_flat_view_from_above_fits_the_scale_alone_and_refuses_a_model_that_sees_nothing():
    """A camera looking straight down at a table: its depths (within a few cm) cannot tell a scale from
    a shift, so a line through them would accept any smooth model depth (an outside trial's random
    weights filled a raised shiny part at table height, 7 cm off, reporting 'holes filled')."""
    scene = render_tabletop(TEN_PARTS, tilt_deg=0.0, depth_noise_m=0.001, seed=4, no_return=SHINY)
    rows, cols = np.mgrid[0:480, 0:640]
    sees_nothing = (4.0 + 0.05 * np.sin(cols / 90.0) + 0.03 * np.cos(rows / 70.0)).astype(np.float32)
    fit = fit_model_depth(sees_nothing, scene.depth)
    assert not fit.trusted and "not a metric model's error" in fit.reason, fit
    model = tabletop_scenes.stand_in_model_depth(scene.true_depth, 1.08, 0.0, MODEL_NOISE_M)
    fit = fit_model_depth(model, scene.depth)
    assert fit.trusted and fit.shift_m == 0.0 and fit.scale == pytest.approx(1.08, abs=0.01), fit
    completed, _ = complete_depth(scene.depth, model, fit)
    holes = np.isnan(scene.depth)
    assert np.median(np.abs(completed[holes] - scene.true_depth[holes])) < 0.004

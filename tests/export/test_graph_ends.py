"""In-graph pre- and post-processing against a NumPy/OpenCV reference of the same maths.

The reference: half-pixel bilinear resizing without antialias written out in NumPy (float64) and
checked against cv2.resize INTER_LINEAR, ImageNet normalisation, letterbox placement from the spec's
mapping; depth cropped to the content and resized to the camera size; boxes mapped with the inverse
affine and clipped. Both the PyTorch modules (the torch backend) and their ONNX twins, the ends the
exported graph is composed with (`runtime.graph_ends`, run by ONNX Runtime), are checked.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from dinov2_ros.export.graph_ends import input_end, output_end
from dinov2_ros.model.camera_ends import BoxesToCamera, DepthToCamera, Preprocess
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.weights.variants import IMAGENET_MEAN, IMAGENET_STD

# PyTorch and ONNX Runtime compute sampling positions in float32: off by up to ~size * 2**-23 pixels,
# so values may differ by that times the largest step between neighbours. A geometry bug (half-pixel
# shift, wrong crop) moves values by about half a step, far above this bound.
POSITION_ERROR = 2.0**-20


def resampling_tolerance(values: np.ndarray, size: int) -> float:
    steps = [np.abs(np.diff(values, axis=axis)).max() for axis in (0, 1)]
    return POSITION_ERROR * size * max(steps) + 1e-5


# OpenCV quantises its bilinear weights to 11 bits (INTER_RESIZE_COEF_BITS): errors up to range / 2**10
OPENCV_WEIGHT_STEP = 2.0**-10


def linear_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix of half-pixel bilinear weights, source clamped at the borders."""
    source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weights = np.zeros((size_out, size_in))
    np.add.at(weights, (np.arange(size_out), low), 1 - (source - low))
    np.add.at(weights, (np.arange(size_out), high), source - low)
    return weights


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W[, C]) -> (height, width[, C]) in float64, half-pixel, no antialias."""
    rows, cols = linear_weights(image.shape[0], height), linear_weights(image.shape[1], width)
    along_rows = np.tensordot(rows, image.astype(np.float64), axes=(1, 0))
    return np.moveaxis(np.tensordot(cols, along_rows, axes=(1, 1)), 0, 1)


BOXES = 9  # per image in the box tests


def spec_for(resize: str, camera=(480, 640), model_input=(224, 224)) -> GraphSpec:
    return GraphSpec(
        "vits14", camera[0], camera[1], model_input[0], model_input[1], resize, ("depth", "center"), top_k=BOXES
    )


def run_onnx(graph, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)


def preprocess(spec: GraphSpec, images: np.ndarray, implementation: str) -> np.ndarray:
    if implementation == "torch":
        return Preprocess(spec)(torch.from_numpy(images)).numpy()
    return run_onnx(input_end(spec), {"images": images})[0]


def to_camera(spec: GraphSpec, depth: np.ndarray, boxes: np.ndarray, implementation: str):
    """(camera depth (N, H, W), camera boxes (N, K, 4)) of model-input depth (N, 1, h, w) and boxes."""
    if implementation == "torch":
        return DepthToCamera(spec)(torch.from_numpy(depth)).numpy(), BoxesToCamera(spec)(
            torch.from_numpy(boxes)
        ).numpy()
    scores = np.zeros(boxes.shape[:2], np.float32)
    inputs = {"input_depth": depth, "input_boxes": boxes, "scores": scores, "classes": scores}
    camera_depth, detections = run_onnx(output_end(spec), inputs)
    return camera_depth, detections[..., :4]


def reference_preprocess(image: np.ndarray, spec: GraphSpec) -> np.ndarray:
    m = spec.mapping()
    resized = resize_bilinear(image, m.content_height, m.content_width)
    normalised = (resized / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    canvas = np.zeros((spec.input_height, spec.input_width, 3), np.float64)
    canvas[m.offset_y : m.offset_y + m.content_height, m.offset_x : m.offset_x + m.content_width] = normalised
    return canvas.transpose(2, 0, 1)


def reference_depth(depth: np.ndarray, spec: GraphSpec) -> np.ndarray:
    m = spec.mapping()
    content = depth[m.offset_y : m.offset_y + m.content_height, m.offset_x : m.offset_x + m.content_width]
    return resize_bilinear(content, spec.camera_height, spec.camera_width)


def reference_boxes(boxes: np.ndarray, spec: GraphSpec) -> np.ndarray:
    m = spec.mapping()
    xy = m.input_to_camera(boxes.reshape(-1, 2)).reshape(boxes.shape)
    return np.clip(xy, 0, [spec.camera_width, spec.camera_height] * 2)


def structured_image(height: int, width: int) -> np.ndarray:
    """Gradients, a sharp-edged rectangle and a checkerboard: resampling errors show at edges."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, ((x // 8 + y // 8) % 2) * 255], axis=-1)
    image[height // 4 : height // 2, width // 3 : width // 2] = (250, 10, 128)
    return image.astype(np.uint8)


CASES = [
    ("stretch", (480, 640), (224, 224)),
    ("letterbox", (480, 640), (224, 224)),
    ("letterbox", (480, 640), (448, 602)),
    ("letterbox", (60, 80), (56, 56)),
    ("stretch", (56, 56), (56, 56)),  # identity size: no resize at all
]


@pytest.mark.parametrize(("size_in", "size_out"), [((480, 640), (224, 224)), ((42, 56), (480, 640)), ((5, 7), (5, 7))])
def test_numpy_reference_is_opencv_bilinear(size_in, size_out):
    image = np.random.default_rng(3).uniform(0, 255, (*size_in, 3)).astype(np.float32)
    opencv = cv2.resize(image, size_out[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resize_bilinear(image, *size_out), opencv, atol=255 * OPENCV_WEIGHT_STEP)


IMPLEMENTATIONS = pytest.mark.parametrize("implementation", ["torch", "onnx"])


@IMPLEMENTATIONS
@pytest.mark.parametrize(("resize", "camera", "model_input"), CASES)
def test_preprocess_matches_opencv(resize, camera, model_input, implementation):
    spec = spec_for(resize, camera, model_input)
    rng = np.random.default_rng(0)
    images = np.stack([rng.integers(0, 256, (*camera, 3), dtype=np.uint8), structured_image(*camera)])
    got = preprocess(spec, images, implementation)
    assert got.shape == (2, 3, *model_input) and got.dtype == np.float32
    for image, result in zip(images, got, strict=True):
        tolerance = resampling_tolerance(image / (255 * min(IMAGENET_STD)), max(camera))
        np.testing.assert_allclose(result, reference_preprocess(image, spec), atol=tolerance)


@IMPLEMENTATIONS
@pytest.mark.parametrize(("resize", "camera", "model_input"), CASES)
def test_depth_to_camera_matches_opencv(resize, camera, model_input, implementation):
    spec = spec_for(resize, camera, model_input)
    depth = np.random.default_rng(1).uniform(0.1, 10.0, (2, 1, *model_input)).astype(np.float32)
    got, _ = to_camera(spec, depth, np.zeros((2, BOXES, 4), np.float32), implementation)
    assert got.shape == (2, *camera)
    for single, result in zip(depth, got, strict=True):
        tolerance = resampling_tolerance(single[0], max(camera))
        np.testing.assert_allclose(result, reference_depth(single[0], spec), atol=tolerance)


@IMPLEMENTATIONS
@pytest.mark.parametrize(("resize", "camera", "model_input"), CASES)
def test_boxes_to_camera_is_the_inverse_map(resize, camera, model_input, implementation):
    spec = spec_for(resize, camera, model_input)
    rng = np.random.default_rng(2)
    corners = rng.uniform(-10, max(model_input) + 10, (2, BOXES, 2, 2))
    boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=-1).astype(np.float32)
    # the last box is drawn around the whole content area: it maps to the whole camera image
    m = spec.mapping()
    boxes[:, -1] = [m.offset_x, m.offset_y, m.offset_x + m.content_width, m.offset_y + m.content_height]
    depth = np.ones((2, 1, *model_input), np.float32)
    _, got = to_camera(spec, depth, boxes, implementation)
    np.testing.assert_allclose(got, reference_boxes(boxes.astype(np.float64), spec), atol=1e-3)
    np.testing.assert_allclose(got[:, -1], [[0, 0, camera[1], camera[0]]] * 2, atol=1e-3)

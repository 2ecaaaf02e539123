"""Image messages <-> NumPy: zero-copy views for every accepted encoding, and a clear ValueError for
every malformed message."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dinov2_ros.ros.image_conversion import (
    array_to_image,
    compressed_to_rgb,
    depth_image_to_metres,
    image_to_rgb,
    image_view,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def message(array: np.ndarray, encoding: str, padding: int = 0, big_endian: bool = False) -> Image:
    """An Image with `padding` bytes after every row, like drivers that align rows."""
    rows = array.reshape(array.shape[0], -1)
    if big_endian:
        rows = rows.astype(rows.dtype.newbyteorder(">"))
    raw = rows.view(np.uint8).reshape(array.shape[0], -1)
    padded = np.concatenate([raw, np.zeros((raw.shape[0], padding), np.uint8)], axis=1)
    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding, step=padded.shape[1])
    msg.is_bigendian = int(big_endian)
    msg.data = padded.tobytes()
    return msg


CASES = {
    "rgb8": (RGB, RGB),
    "bgr8": (RGB[..., ::-1].copy(), RGB),
    "rgba8": (np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
    "bgra8": (np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
    "mono8": (RGB[..., 0].copy(), np.repeat(RGB[..., :1], 3, axis=2)),
}


@pytest.mark.parametrize("encoding", list(CASES))
@pytest.mark.parametrize("padding", [0, 3])
def test_colour_encodings_become_rgb(encoding, padding):
    source, expected = CASES[encoding]
    msg = message(source, encoding, padding)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)
    view = image_view(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8)), "the view must not copy"
    np.testing.assert_array_equal(view, source)


@pytest.mark.parametrize("big_endian", [False, True])
def test_depth_16uc1_is_millimetres_and_32fc1_metres_with_nan_invalid(big_endian):
    millimetres = np.array([[0, 1000], [1500, 65535]], np.uint16)
    metres = depth_image_to_metres(message(millimetres, "16UC1", 2, big_endian))
    np.testing.assert_allclose(metres, [[np.nan, 1.0], [1.5, 65.535]], rtol=1e-6)
    floats = np.array([[0.0, 1.25], [np.inf, -1.0]], np.float32)
    metres = depth_image_to_metres(message(floats, "32FC1", 0, big_endian))
    np.testing.assert_array_equal(np.isnan(metres), [[True, False], [True, True]])
    assert metres[0, 1] == 1.25 and metres.dtype == np.float32


def _bad(**changes) -> Image:
    msg = message(RGB, "rgb8")
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (_bad(encoding="yuv422"), "unsupported image encoding 'yuv422'"),
        (_bad(step=14), r"wrong step for rgb8: step 14 bytes is shorter than width 5 x 3"),
        (_bad(data=bytes(50)), r"truncated image data: 50 bytes, expected step 15 x height 6 = 90"),
        (_bad(data=bytes(91)), "oversized image data"),
        (_bad(width=0), "empty image"),
        (_bad(encoding="32FC1", step=20, data=bytes(120)), "is not a colour encoding"),
    ],
)
def test_malformed_images_raise_value_error_saying_what_is_wrong(msg, match):
    with pytest.raises(ValueError, match=match):
        image_to_rgb(msg)


def test_a_colour_image_on_the_depth_topic_is_refused():
    with pytest.raises(ValueError, match="is not a depth encoding"):
        depth_image_to_metres(message(RGB, "rgb8"))


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_compressed_images_decode_to_rgb(extension):
    smooth = np.kron(RGB, np.ones((4, 4, 1), np.uint8))  # JPEG is lossy: compare a smooth picture
    _, data = cv2.imencode(extension, cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR))
    decoded = compressed_to_rgb(CompressedImage(format=extension[1:], data=data.tobytes())).astype(int)
    assert decoded.shape == smooth.shape
    error = np.abs(decoded - smooth).mean()
    assert error <= (20 if extension == ".jpg" else 0)
    assert error < np.abs(decoded - smooth[..., ::-1]).mean(), "channels must come out in RGB order"


@pytest.mark.parametrize(
    ("data", "fmt", "match"),
    [
        (b"\xff\xd8\xff\xe0 truncated", "jpeg", "corrupt compressed image"),
        (b"", "jpeg", "corrupt compressed image: OpenCV could not decode 0 bytes"),
        (b"\x89PNG", "16UC1; compressedDepth png", "compressed depth"),
    ],
)
def test_undecodable_compressed_images_raise_value_error(data, fmt, match):
    with pytest.raises(ValueError, match=match):
        compressed_to_rgb(CompressedImage(format=fmt, data=data))


@pytest.mark.parametrize(("encoding", "array"), [("rgb8", RGB), ("32FC1", RNG.random((4, 3), dtype=np.float32))])
def test_array_to_image_round_trips(encoding, array):
    header = Header(frame_id="optical")
    msg = array_to_image(array, encoding, header)
    assert msg.header.frame_id == "optical" and msg.step == array[0].nbytes
    np.testing.assert_array_equal(image_view(msg), array)


def test_array_to_image_refuses_a_mismatched_array():
    with pytest.raises(ValueError, match="cannot publish a float64 array as '32FC1'"):
        array_to_image(np.zeros((2, 2)), "32FC1", Header())

"""Image messages <-> NumPy: zero-copy views for every accepted encoding, and a clear ValueError for
every malformed message."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dinov2_ros.ros.image_conversion import (
    COLOUR_ENCODINGS,
    DEPTH_ENCODINGS,
    array_to_image,
    compressed_to_rgb,
    depth_image_to_metres,
    image_to_rgb,
    image_view,
    parse_compressed_format,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def message(array: np.ndarray, encoding: str, padding: int = 0, big_endian: bool = False) -> Image:
    """An Image with `padding` bytes after every row, like drivers that align rows."""
    rows = np.ascontiguousarray(array).reshape(array.shape[0], -1)
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


RGB16 = RNG.integers(0, 65536, (6, 8, 3), dtype=np.uint16)
MOSAIC8 = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
# the raw pixels of each driver encoding, and OpenCV's conversion of them to RGB as cv_bridge does it
# (cv_bridge.cpp getConversionCode(encoding, rgb8), then 16 -> 8 bits: convertTo(CV_8U, 255 / 65535))
DRIVER_CASES = {
    "yuv422_yuy2": (MOSAIC8.reshape(6, 4, 2), [cv2.COLOR_YUV2RGB_YUY2]),
    "yuv422": (MOSAIC8.reshape(6, 4, 2), [cv2.COLOR_YUV2RGB_UYVY]),
    "bayer_rggb8": (MOSAIC8, [cv2.COLOR_BayerBG2RGB]),
    "bayer_bggr8": (MOSAIC8, [cv2.COLOR_BayerRG2RGB]),
    "bayer_gbrg8": (MOSAIC8, [cv2.COLOR_BayerGR2RGB]),
    "bayer_grbg8": (MOSAIC8, [cv2.COLOR_BayerGB2RGB]),
    "bayer_rggb16": (RGB16[..., 0], [cv2.COLOR_BayerBG2RGB, "scale"]),
    "mono16": (RGB16[..., 0], [cv2.COLOR_GRAY2RGB, "scale"]),
    "rgb16": (RGB16, ["scale"]),
    "bgr16": (RGB16, [cv2.COLOR_BGR2RGB, "scale"]),
    "rgba16": (np.dstack([RGB16, RGB16[..., :1]]), [cv2.COLOR_RGBA2RGB, "scale"]),
    "bgra16": (np.dstack([RGB16, RGB16[..., :1]]), [cv2.COLOR_BGRA2RGB, "scale"]),
}


def _opencv_reference(pixels: np.ndarray, steps: list) -> np.ndarray:
    """OpenCV's cvtColor on the same pixels, then round(x * 255 / 65535) (no ties: x / 257 is never k + 0.5)."""
    out = pixels
    for step in steps:
        out = np.rint(out * (255.0 / 65535.0)).astype(np.uint8) if step == "scale" else cv2.cvtColor(out, step)
    return out


@pytest.mark.parametrize(
    ("encoding", "padding", "big_endian"),
    [
        (encoding, padding, big_endian)
        for encoding, (pixels, _) in DRIVER_CASES.items()
        for padding, big_endian in [(0, False), (6, False), (4, True)]
        if pixels.itemsize == 2 or not big_endian  # byte order applies to 16-bit encodings only
    ],
)
def test_driver_encodings_convert_as_cv_bridge_does(encoding, padding, big_endian):
    pixels, steps = DRIVER_CASES[encoding]
    rgb = image_to_rgb(message(pixels, encoding, padding, big_endian))
    assert rgb.dtype == np.uint8 and rgb.shape == (*pixels.shape[:2], 3)
    np.testing.assert_array_equal(rgb, _opencv_reference(pixels, steps))


def test_16_bit_channels_scale_to_8_bits_by_255_over_65535_rounded():
    mono16 = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)  # x * 255 / 65535 = 0, .498, .502, 1, 128, 255
    rgb = image_to_rgb(message(mono16, "mono16", big_endian=True))
    np.testing.assert_array_equal(rgb[..., 0], [[0, 0, 1, 1, 128, 255]])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_yuyv_pixels_by_hand():
    """Y0 U Y1 V pairs through BT.601 video range, as OpenCV (and so cv_bridge) converts YUV 4:2:2:
    R = 1.164 (Y - 16) + 1.596 (V - 128), G = 1.164 (Y - 16) - 0.813 (V - 128) - 0.391 (U - 128),
    B = 1.164 (Y - 16) + 2.018 (U - 128), clipped to 0..255."""
    yuyv = np.array([[[128, 128], [128, 128], [81, 90], [81, 240]]], np.uint8)  # grey, grey, red, red
    rgb = image_to_rgb(message(yuyv, "yuv422_yuy2")).astype(int)
    grey = round(1.164 * (128 - 16))  # 130
    red = [round(1.164 * 65 + 1.596 * 112), 0, 0]  # G and B come out below 0: clipped
    np.testing.assert_allclose(rgb[0], [[grey] * 3, [grey] * 3, red, red], atol=1)


def test_every_colour_encoding_has_a_conversion_and_the_table_lists_what_cv_bridge_converts():
    expected = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "rgba16", "bgra16", "mono16"}
    expected |= {"yuv422", "yuv422_yuy2"} | {f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)}
    assert set(COLOUR_ENCODINGS) == expected


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
        (_bad(encoding="yuv420"), "unsupported image encoding 'yuv420'"),
        (_bad(encoding="yuv422_yuy2", width=5, step=10, data=bytes(60)), "width must be even"),
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


def test_the_refusal_of_an_unknown_colour_encoding_lists_the_colour_encodings_only():
    with pytest.raises(ValueError) as refused:
        image_to_rgb(_bad(encoding="nv12"))
    listed = str(refused.value).split("expected one of ")[1].split(";")[0].split(", ")
    assert listed == list(COLOUR_ENCODINGS) and not set(listed) & set(DEPTH_ENCODINGS)
    assert refused.value.problem == "unknown encoding 'nv12'"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [({"step": 14}, "step"), ({"data": bytes(50)}, "truncated"), ({"encoding": "yuv420"}, "unknown encoding 'yuv420'")],
)
def test_each_fault_names_its_problem_without_the_numbers(changes, problem):
    with pytest.raises(ValueError) as refused:
        image_to_rgb(_bad(**changes))
    assert refused.value.problem == problem


def test_a_colour_image_on_the_depth_topic_is_refused():
    with pytest.raises(ValueError, match="is not a depth encoding"):
        depth_image_to_metres(message(RGB, "rgb8"))


SMOOTH = np.kron(RGB, np.ones((4, 4, 1), np.uint8))  # JPEG is lossy: a smooth picture
FORMATS = {  # format string -> (what the publisher encodes with OpenCV, how OpenCV's decoded pixels read as RGB)
    "rgb8; jpeg compressed bgr8": (".jpg", cv2.cvtColor(SMOOTH, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2RGB),
    "bgr8; png compressed bgr8": (".png", cv2.cvtColor(SMOOTH, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2RGB),
    "rgba8; png compressed bgra8": (".png", cv2.cvtColor(SMOOTH, cv2.COLOR_RGB2BGRA), cv2.COLOR_BGRA2RGB),
    "mono8; jpeg compressed mono8": (".jpg", SMOOTH[..., 0].copy(), cv2.COLOR_GRAY2RGB),
    "bayer_rggb8; png compressed ": (".png", MOSAIC8, cv2.COLOR_BayerBG2RGB),
    "jpeg": (".jpg", cv2.cvtColor(SMOOTH, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2RGB),
    "png": (".png", SMOOTH[..., 1].copy(), cv2.COLOR_GRAY2RGB),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_compressed_images_decode_as_their_format_string_says(fmt):
    extension, encoded, to_rgb = FORMATS[fmt]
    _, data = cv2.imencode(extension, encoded)
    expected = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), to_rgb)
    np.testing.assert_array_equal(compressed_to_rgb(CompressedImage(format=fmt, data=data.tobytes())), expected)


def test_a_compressed_rgb8_image_comes_out_in_rgb_order():
    _, data = cv2.imencode(".png", cv2.cvtColor(SMOOTH, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(
        compressed_to_rgb(CompressedImage(format="rgb8; png compressed bgr8", data=data)), SMOOTH
    )


def test_a_16_bit_png_scales_to_8_bits():
    _, data = cv2.imencode(".png", RGB16[..., 0])
    rgb = compressed_to_rgb(CompressedImage(format="mono16; png compressed ", data=data.tobytes()))
    np.testing.assert_array_equal(rgb, _opencv_reference(RGB16[..., 0], [cv2.COLOR_GRAY2RGB, "scale"]))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("rgb8; jpeg compressed bgr8", ("rgb8", "jpeg", "bgr8")),
        ("bgr16; png compressed bgr16", ("bgr16", "png", "bgr16")),
        ("bayer_rggb8; png compressed ", ("bayer_rggb8", "png", None)),
        ("16UC1; compressedDepth png", ("16UC1", "compressedDepth", None)),
        ("jpeg", (None, "jpeg", None)),
    ],
)
def test_format_strings_parse_as_image_transport_writes_them(text, parsed):
    form = parse_compressed_format(text)
    assert (form.source, form.codec, form.pixels) == parsed


@pytest.mark.parametrize(
    ("data", "fmt", "match"),
    [
        (b"\xff\xd8\xff\xe0 truncated", "jpeg", "corrupt compressed image"),
        (b"", "jpeg", "corrupt compressed image: OpenCV could not decode 0 bytes"),
        (b"\x89PNG", "16UC1; compressedDepth png", "compressed depth .* is not a camera image"),
        (b"\x89PNG", "16UC1; png compressed ", "'16UC1' is not a colour encoding"),
        (b"\x89PNG", "nv12; png compressed ", "unsupported image encoding 'nv12'"),
    ],
)
def test_undecodable_compressed_images_raise_value_error(data, fmt, match):
    with pytest.raises(ValueError, match=match):
        compressed_to_rgb(CompressedImage(format=fmt, data=data))


def test_compressed_pixels_that_do_not_fit_the_format_are_refused():
    _, data = cv2.imencode(".png", SMOOTH[..., 0])
    with pytest.raises(ValueError, match=r"decodes to 1 channel\(s\) of 8 bits, not bgr8"):
        compressed_to_rgb(CompressedImage(format="rgb8; png compressed bgr8", data=data.tobytes()))


@pytest.mark.parametrize(("encoding", "array"), [("rgb8", RGB), ("32FC1", RNG.random((4, 3), dtype=np.float32))])
def test_array_to_image_round_trips(encoding, array):
    header = Header(frame_id="optical")
    msg = array_to_image(array, encoding, header)
    assert msg.header.frame_id == "optical" and msg.step == array[0].nbytes
    np.testing.assert_array_equal(image_view(msg), array)


def test_array_to_image_refuses_a_mismatched_array():
    with pytest.raises(ValueError, match="cannot publish a float64 array as '32FC1'"):
        array_to_image(np.zeros((2, 2)), "32FC1", Header())

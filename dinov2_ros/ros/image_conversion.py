"""sensor_msgs/Image and CompressedImage <-> NumPy without cv_bridge.

Raw images become zero-copy views of `msg.data` (rclpy stores it as an array.array), so an rgb8 frame
costs nothing until the pipeline copies it into the batch; every other encoding cv_bridge converts to
rgb8 (BGR, RGBA, mono, 16-bit, YUV 4:2:2, Bayer) is converted as cv_bridge does, with OpenCV. Every
malformed message raises a Rejection (a ValueError; category "image" or "depth") naming the field that
is wrong and the kind of problem, so the node can skip the frame, count it, warn once per problem and
keep running.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dinov2_ros.perception.depth import DEPTH_DTYPES, depth_to_metres
from dinov2_ros.perception.rejection import Rejection


@dataclass(frozen=True)
class _Encoding:
    dtype: np.dtype
    channels: int
    # cv2.cvtColor code to RGB at the source bit depth (cv_bridge's getConversionCode(encoding, rgb8));
    # None: the channels are already in RGB order (or a depth encoding)
    to_rgb: int | None = None


_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)
# every encoding cv_bridge converts to rgb8 (sensor_msgs/image_encodings.hpp names)
COLOUR_ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(_U8, 3),
    "bgr8": _Encoding(_U8, 3, cv2.COLOR_BGR2RGB),
    "rgba8": _Encoding(_U8, 4, cv2.COLOR_RGBA2RGB),
    "bgra8": _Encoding(_U8, 4, cv2.COLOR_BGRA2RGB),
    "mono8": _Encoding(_U8, 1, cv2.COLOR_GRAY2RGB),
    "rgb16": _Encoding(_U16, 3),
    "bgr16": _Encoding(_U16, 3, cv2.COLOR_BGR2RGB),
    "rgba16": _Encoding(_U16, 4, cv2.COLOR_RGBA2RGB),
    "bgra16": _Encoding(_U16, 4, cv2.COLOR_BGRA2RGB),
    "mono16": _Encoding(_U16, 1, cv2.COLOR_GRAY2RGB),
    "yuv422": _Encoding(_U8, 2, cv2.COLOR_YUV2RGB_UYVY),  # UYVY
    "yuv422_yuy2": _Encoding(_U8, 2, cv2.COLOR_YUV2RGB_YUY2),  # YUYV, usb_cam's default
    # OpenCV names a Bayer pattern by the second row's first two pixels: ROS rggb is OpenCV BG
    **{
        f"bayer_{pattern}{bits}": _Encoding(dtype, 1, code)
        for pattern, code in (
            ("rggb", cv2.COLOR_BayerBG2RGB),
            ("bggr", cv2.COLOR_BayerRG2RGB),
            ("gbrg", cv2.COLOR_BayerGR2RGB),
            ("grbg", cv2.COLOR_BayerGB2RGB),
        )
        for bits, dtype in ((8, _U8), (16, _U16))
    },
}
DEPTH_ENCODINGS: dict[str, _Encoding] = {name: _Encoding(dtype, 1) for name, dtype in DEPTH_DTYPES.items()}  # REP 118
# what the node publishes besides: dinov2/instances/image labels
LABEL_ENCODINGS: dict[str, _Encoding] = {"32SC1": _Encoding(np.dtype(np.int32), 1)}
ENCODINGS = {**COLOUR_ENCODINGS, **DEPTH_ENCODINGS, **LABEL_ENCODINGS}
# cv_bridge scales 16-bit to 8-bit channels by 255 / 65535 (toCvCopyImpl), rounding as OpenCV's convertTo
_SIXTEEN_TO_EIGHT_BITS = 255.0 / 65535.0
_HOST_IS_BIG_ENDIAN = sys.byteorder == "big"


def _unknown_colour_encoding(encoding: str) -> Rejection:
    if encoding in DEPTH_ENCODINGS:
        return Rejection(
            "image",
            "depth encoding on the image topic",
            f"camera image encoding {encoding!r} is not a colour encoding: expected one of "
            f"{', '.join(COLOUR_ENCODINGS)}; is a depth topic remapped onto the image topic?",
        )
    return Rejection(
        "image",
        f"unknown encoding {encoding!r}",
        f"unsupported image encoding {encoding!r}: expected one of {', '.join(COLOUR_ENCODINGS)}; "
        "convert the stream (e.g. with image_proc) or publish one of those encodings",
    )


def _view(msg: Image, encoding: _Encoding, category: str) -> np.ndarray:
    """Zero-copy view of `msg`'s pixels; a Rejection of `category` ("image", "depth") when a field disagrees."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise Rejection(category, "empty", f"empty image: {width}x{height} pixels; the publisher sent no picture")
    pixel_bytes = encoding.dtype.itemsize * encoding.channels
    if step < width * pixel_bytes:
        raise Rejection(
            category,
            "step",
            f"wrong step for {msg.encoding}: step {step} bytes is shorter than width {width} x "
            f"{pixel_bytes} bytes per pixel = {width * pixel_bytes}; the publisher's step field is wrong",
        )
    size = len(msg.data)
    if size != step * height:
        kind = "truncated" if size < step * height else "oversized"
        raise Rejection(
            category, kind, f"{kind} image data: {size} bytes, expected step {step} x height {height} = {step * height}"
        )
    dtype = encoding.dtype
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _HOST_IS_BIG_ENDIAN:
        dtype = dtype.newbyteorder()
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    shape: tuple[int, ...] = (height, width)
    strides: tuple[int, ...] = (step, pixel_bytes)
    if encoding.channels > 1:
        shape += (encoding.channels,)
        strides += (dtype.itemsize,)
    return np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides)


def image_view(msg: Image, category: str = "image") -> np.ndarray:
    """Zero-copy (H, W) or (H, W, C) view of a raw image in its own byte order (`is_bigendian`);
    rows may be longer than the pixels (`step` padding). A Rejection of `category` if any field disagrees."""
    encoding = ENCODINGS.get(msg.encoding)
    if encoding is None:
        raise Rejection(
            category,
            f"unknown encoding {msg.encoding!r}",
            f"unsupported image encoding {msg.encoding!r}: expected one of {', '.join(ENCODINGS)}",
        )
    return _view(msg, encoding, category)


def pixels_to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from the pixels of a colour encoding, converted as cv_bridge's
    `cvtColor(image, "rgb8")` does: OpenCV's colour conversion at the source bit depth, then 16-bit
    channels scaled by 255/65535. rgb8 comes back as the same array (no copy). A Rejection when the
    encoding is not a colour encoding or the pixels do not fit it."""
    spec = COLOUR_ENCODINGS.get(encoding)
    if spec is None:
        raise _unknown_colour_encoding(encoding)
    if spec.to_rgb in (cv2.COLOR_YUV2RGB_UYVY, cv2.COLOR_YUV2RGB_YUY2) and pixels.shape[1] % 2:
        raise Rejection(
            "image",
            "odd width for yuv422",
            f"{encoding} packs two pixels in four bytes, so its width must be even, got {pixels.shape[1]}; "
            "check the driver's image size",
        )
    if pixels.dtype.byteorder not in "=|":
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))  # OpenCV reads native byte order only
    try:
        rgb = pixels if spec.to_rgb is None else cv2.cvtColor(pixels, spec.to_rgb)
    except cv2.error as error:
        raise Rejection(
            "image",
            f"cannot convert {encoding}",
            f"OpenCV cannot convert a {pixels.shape[1]}x{pixels.shape[0]} {encoding} image to rgb8 "
            f"({error.msg}); check the image size and encoding the driver publishes",
        ) from error
    if spec.dtype == _U16:
        rgb = cv2.convertScaleAbs(rgb, alpha=_SIXTEEN_TO_EIGHT_BITS)
    return rgb


def image_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a raw image in any of COLOUR_ENCODINGS (see pixels_to_rgb); a zero-copy
    view for rgb8. A Rejection naming the problem for an unknown encoding or malformed message."""
    spec = COLOUR_ENCODINGS.get(msg.encoding)
    if spec is None:
        raise _unknown_colour_encoding(msg.encoding)
    return pixels_to_rgb(_view(msg, spec, "image"), msg.encoding)


def depth_image_to_metres(msg: Image) -> np.ndarray:
    """(H, W) float32 metres with NaN where invalid: 16UC1 is millimetres (0 invalid), 32FC1 metres (REP 118)."""
    spec = DEPTH_ENCODINGS.get(msg.encoding)
    if spec is None:
        raise Rejection(
            "depth",
            f"depth encoding {msg.encoding!r}",
            f"depth image encoding {msg.encoding!r} is not a depth encoding: expected 16UC1 (mm) or "
            "32FC1 (m); remap the camera's aligned depth topic (e.g. aligned_depth_to_color/image_raw)",
        )
    return depth_to_metres(_view(msg, spec, "depth"), msg.encoding)


@dataclass(frozen=True)
class CompressedFormat:
    """image_transport_plugins' CompressedImage.format, e.g. "rgb8; jpeg compressed bgr8"."""

    source: str | None  # the raw image's encoding before compression; None for a bare "jpeg" or "png"
    codec: str  # "jpeg", "png", "tiff", ... or "compressedDepth"
    pixels: str | None  # the encoding of the compressed (decoded) pixels; None: those of `source`


def parse_compressed_format(text: str) -> CompressedFormat:
    """Split a format string as compressed_image_transport writes it: "<source>; <codec> compressed
    [<pixels>]" (PNG of a non-colour image leaves <pixels> empty), "<source>; compressedDepth [<codec>]"
    (compressed_depth_image_transport), or the bare codec of older publishers."""
    source, separator, rest = (part.strip() for part in text.partition(";"))
    if not separator:
        source, rest = None, source
    if rest.startswith("compressedDepth"):
        return CompressedFormat(source, "compressedDepth", None)
    codec, _, pixels = (part.strip() for part in rest.partition("compressed"))
    return CompressedFormat(source or None, codec, pixels or None)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a CompressedImage to (H, W, 3) uint8 RGB as image_transport's compressed subscriber
    does: the format's pixel encoding (else its source encoding, else the decoded channels: 1 mono,
    3 BGR, 4 BGRA, as OpenCV decodes colour) says how to read the decoded pixels. A Rejection for
    compressedDepth, a non-colour source encoding, or data that does not decode to that encoding."""
    form = parse_compressed_format(msg.format)
    if form.codec == "compressedDepth" or "compressedDepth" in msg.format:
        raise Rejection(
            "image",
            "compressedDepth on the image topic",
            f"compressed depth ({msg.format!r}) is not a camera image: the colour input expects "
            "'<encoding>; jpeg compressed bgr8', '<encoding>; png compressed bgr8' or 'jpeg'; subscribe to "
            "the colour camera's image/compressed topic (depth goes raw to the depth input, camera.use_depth)",
        )
    if form.source is not None and form.source not in COLOUR_ENCODINGS:
        raise _unknown_colour_encoding(form.source)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if decoded is None:
        raise Rejection(
            "image",
            "corrupt compressed image",
            f"corrupt compressed image: OpenCV could not decode {data.size} bytes of format "
            f"{msg.format!r}; check the publisher or use the raw image topic",
        )
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    bits = 8 * decoded.dtype.itemsize
    encoding = form.pixels or form.source or {1: "mono", 3: "bgr", 4: "bgra"}.get(channels, "?") + str(bits)
    spec = COLOUR_ENCODINGS.get(encoding)
    if spec is None or spec.channels != channels or spec.dtype != decoded.dtype:
        raise Rejection(
            "image",
            f"compressed pixels are not {encoding}",
            f"compressed image of format {msg.format!r} decodes to {channels} channel(s) of {bits} bits, "
            f"not {encoding}; check the publisher's format string",
        )
    return pixels_to_rgb(decoded, encoding)


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """Image message holding a copy of a C-contiguous array (`tobytes` is the fast path in rclpy)."""
    expected = ENCODINGS.get(encoding)
    if expected is None or array.dtype != expected.dtype:
        raise ValueError(f"cannot publish a {array.dtype} array as {encoding!r}")
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels != expected.channels:
        raise ValueError(f"{encoding!r} has {expected.channels} channels, the array has {channels}")
    array = np.ascontiguousarray(array)
    msg = Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding)
    msg.is_bigendian = int(_HOST_IS_BIG_ENDIAN)
    msg.step = array.shape[1] * array.itemsize * channels
    msg.data = array.tobytes()
    return msg

"""sensor_msgs/Image and CompressedImage <-> NumPy without cv_bridge.

Raw images become zero-copy views of `msg.data` (rclpy stores it as an array.array), so a frame costs
nothing until the pipeline copies it into the batch. Every malformed message raises ValueError naming
the field that is wrong, so the node can skip the frame, count it and keep running.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dinov2_ros.perception.object_lifting import depth_to_metres


@dataclass(frozen=True)
class _Encoding:
    dtype: np.dtype
    channels: int


ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(np.dtype(np.uint8), 3),
    "bgr8": _Encoding(np.dtype(np.uint8), 3),
    "rgba8": _Encoding(np.dtype(np.uint8), 4),
    "bgra8": _Encoding(np.dtype(np.uint8), 4),
    "mono8": _Encoding(np.dtype(np.uint8), 1),
    "16UC1": _Encoding(np.dtype(np.uint16), 1),
    "32FC1": _Encoding(np.dtype(np.float32), 1),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "32FC1")
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
}
_HOST_IS_BIG_ENDIAN = sys.byteorder == "big"


def image_view(msg: Image) -> np.ndarray:
    """Zero-copy (H, W) or (H, W, C) view of a raw image; ValueError if any field disagrees."""
    encoding = ENCODINGS.get(msg.encoding)
    if encoding is None:
        raise ValueError(
            f"unsupported image encoding {msg.encoding!r}: expected one of {', '.join(ENCODINGS)}; "
            "convert the stream (e.g. with image_proc) or publish one of those encodings"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"empty image: {width}x{height} pixels; the publisher sent no picture")
    pixel_bytes = encoding.dtype.itemsize * encoding.channels
    if step < width * pixel_bytes:
        raise ValueError(
            f"wrong step for {msg.encoding}: step {step} bytes is shorter than width {width} x "
            f"{pixel_bytes} bytes per pixel = {width * pixel_bytes}; the publisher's step field is wrong"
        )
    size = len(msg.data)
    if size != step * height:
        kind = "truncated" if size < step * height else "oversized"
        raise ValueError(f"{kind} image data: {size} bytes, expected step {step} x height {height} = {step * height}")
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


def image_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a view for rgb8, one OpenCV conversion for the other colour encodings."""
    if msg.encoding in DEPTH_ENCODINGS:
        raise ValueError(
            f"camera image encoding {msg.encoding!r} is not a colour encoding: expected one of "
            f"{', '.join(COLOUR_ENCODINGS)}; is a depth topic remapped onto the image topic?"
        )
    view = image_view(msg)
    conversion = _TO_RGB.get(msg.encoding)
    return view if conversion is None else cv2.cvtColor(view, conversion)


def depth_image_to_metres(msg: Image) -> np.ndarray:
    """(H, W) float32 metres with NaN where invalid: 16UC1 is millimetres (0 invalid), 32FC1 metres."""
    if msg.encoding in COLOUR_ENCODINGS:
        raise ValueError(
            f"depth image encoding {msg.encoding!r} is not a depth encoding: expected 16UC1 (mm) or "
            "32FC1 (m); remap the camera's aligned depth topic (e.g. aligned_depth_to_color/image_raw)"
        )
    return depth_to_metres(image_view(msg), msg.encoding)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a JPEG/PNG CompressedImage to (H, W, 3) uint8 RGB; ValueError for undecodable data."""
    if "compressedDepth" in msg.format:
        raise ValueError(f"compressed depth ({msg.format!r}) is not a camera image; subscribe to the raw depth topic")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if decoded is None:
        raise ValueError(
            f"corrupt compressed image: OpenCV could not decode {data.size} bytes of format "
            f"{msg.format!r}; check the publisher or use the raw image topic"
        )
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


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

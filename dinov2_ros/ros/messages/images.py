"""Images pixel-aligned with the camera image, each with the input's CameraInfo beside it (image_transport's
CameraPublisher rule): metric depth (REP 118: 32FC1 metres, NaN invalid), instance labels, and the
debug picture."""

from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dinov2_ros.perception.detection_decoding import box_window
from dinov2_ros.perception.frame import FrameResult
from dinov2_ros.ros.image_conversion import array_to_image
from dinov2_ros.ros.messages.detections import detection_number
from dinov2_ros.ros.messages.markers import class_colour


def camera_info_for_output(camera_info: CameraInfo, header: Header) -> CameraInfo:
    """The input's CameraInfo under an output image's header: the outputs are pixel-aligned with the
    camera image, so the same calibration, binning and ROI describe them."""
    return CameraInfo(
        header=header,
        height=camera_info.height,
        width=camera_info.width,
        distortion_model=camera_info.distortion_model,
        d=camera_info.d,
        k=camera_info.k,
        r=camera_info.r,
        p=camera_info.p,
        binning_x=camera_info.binning_x,
        binning_y=camera_info.binning_y,
        roi=camera_info.roi,
    )


def instance_labels(result: FrameResult) -> np.ndarray:
    """(H, W) int32 labels at camera resolution: 0 background, else the `detection_id` of the detection
    the pixel belongs to (int32, so a label equals a track id however long the run: 16 bits would wrap
    after 65,535 parts); where masks overlap, the higher score wins. A detection without a mask
    covers its box. Masks come from the patch grid (14 model-input pixels) upsampled bilinearly, so
    their edges are as coarse as a patch at camera scale; they are empty outside their boxes
    (Detection.mask), so each is painted within its box only: the cost follows the boxes, not the frame."""
    height, width = result.frame.size
    labels = np.zeros((height, width), np.int32)
    order = sorted(range(len(result.detections)), key=lambda i: result.detections[i].score)
    for index in order:  # lowest score first: higher scores paint over it
        detection = result.detections[index]
        label = detection_number(detection, index)
        if detection.mask is not None:
            window = box_window(detection.box, (height, width))
            np.copyto(labels[window], label, where=detection.mask[window])
        else:
            x1, y1, x2, y2 = (round(float(v)) for v in detection.box)
            labels[max(0, y1) : y2, max(0, x1) : x2] = label
    return labels


def to_instances_messages(result: FrameResult, header: Header, camera_info: CameraInfo) -> tuple[Image, CameraInfo]:
    """Instance label image (32SC1, `instance_labels`) and its CameraInfo, published as siblings
    `dinov2/instances/image` and `dinov2/instances/camera_info`."""
    return array_to_image(instance_labels(result), "32SC1", header), camera_info_for_output(camera_info, header)


def to_depth_messages(depth: np.ndarray, header: Header, camera_info: CameraInfo) -> tuple[Image, CameraInfo]:
    """Depth image (32FC1 metres, NaN invalid, REP 118) and its CameraInfo: the input's, under the image
    header; published as siblings (`dinov2/depth/image` and `dinov2/depth/camera_info`, image_transport's rule)."""
    return array_to_image(depth, "32FC1", header), camera_info_for_output(camera_info, header)


def draw_debug_image(result: FrameResult, labels: dict[int, str], max_depth_m: float) -> np.ndarray:
    """RGB picture of the frame with depth blended in (when there is depth), masks tinted and boxes labelled.

    Masks are tinted inside their boxes only (FramePipeline's masks are empty outside them), which keeps
    the cost per detection proportional to its box, not to the frame: this runs on the worker thread.
    """
    image = np.ascontiguousarray(result.frame.image_rgb).copy()
    if result.depth is not None:
        depth = np.nan_to_num(result.depth, nan=0.0)
        scaled = np.clip(depth * (255.0 / max_depth_m), 0, 255).astype(np.uint8)
        depth_rgb = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
        cv2.addWeighted(image, 0.65, depth_rgb, 0.35, 0.0, dst=image)
    height, width = image.shape[:2]
    for index, detection in enumerate(result.detections):
        colour = tuple(int(c * 255) for c in class_colour(detection.class_id))
        x1, y1, x2, y2 = (round(float(v)) for v in detection.box)
        if detection.mask is not None:
            top, left, bottom, right = max(y1, 0), max(x1, 0), min(y2, height), min(x2, width)
            roi, inside = image[top:bottom, left:right], detection.mask[top:bottom, left:right]
            roi[inside] = ((roi[inside].astype(np.uint16) + colour) // 2).astype(np.uint8)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        name = labels.get(detection.class_id, detection.class_id)
        caption = f"{name} #{detection_number(detection, index)} {detection.score:.2f}"
        if detection.centre is not None:
            caption += f" {float(detection.centre[2]):.2f} m"
        cv2.putText(image, caption, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return image


def debug_image_message(result: FrameResult, labels: dict[int, str], max_depth_m: float, header: Header) -> Image:
    return array_to_image(draw_debug_image(result, labels, max_depth_m), "rgb8", header)

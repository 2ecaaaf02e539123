"""/diagnostics: per-camera rates, latency, reasons for skipped frames, and what a silent camera likely means."""

from __future__ import annotations

import dataclasses

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus

from dinov2_ros.perception.frame import Detection
from dinov2_ros.ros.diagnostics import STALE_INPUT_S, CameraStatistics


def detections() -> list[Detection]:
    return [Detection(3, "bolt", 0.9, np.array([10, 5, 30, 20], np.float32), None, centre=np.array([0.0, 0.0, 1.0]))]


def test_camera_statistics_report_rates_latency_and_reasons():
    stats = CameraStatistics("front", window_s=5.0)
    assert stats.to_status(0.0, "node", dropped=0).level == DiagnosticStatus.WARN
    for i in range(10):
        stats.image_received(i * 0.1, age_s=0.003)
        stats.result_published(i * 0.1, latency_s=0.05, inference_s=0.02, in_node_s=0.001 * i)
    stats.frame_rejected(0.75, "image", "truncated image data")
    status = stats.to_status(1.0, "node", dropped=4)
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "front"
    assert values["input rate (Hz)"] == "2.00" and values["latency median (ms)"] == "50.0"
    assert values["image age at receipt median (ms)"] == "3.0"
    assert values["inference median (ms)"] == "20.0" and values["in node besides inference median (ms)"] == "4.5"
    assert values["frames dropped"] == "4" and values["rejected: image"] == "1"
    assert values["last rejection"] == "image: truncated image data" and values["last rejection age (s)"] == "0.2"
    silent = stats.to_status(1.0 + STALE_INPUT_S + 1.0, "node", dropped=4)
    assert silent.level == DiagnosticStatus.WARN and silent.message.startswith("no image for")


def test_a_camera_waiting_for_its_graph_is_told_apart_from_rejected_frames():
    stats = CameraStatistics("front", window_s=1.0)
    stats.image_received(0.0, age_s=0.003)
    stats.frame_waited_for_graph()
    waiting = stats.to_status(0.5, "node", dropped=0)
    assert waiting.level == DiagnosticStatus.WARN and "graph for their size is being prepared" in waiting.message
    assert "last rejection" not in {kv.key for kv in waiting.values}
    stats.frame_rejected(0.5, "image", "truncated image data")
    assert "see 'last rejection'" in stats.to_status(0.5, "node", dropped=0).message


def test_a_camera_that_stopped_sending_is_not_blamed_on_the_transport():
    """Frames too large for the sender's shared memory never arrive at all; a stream that delivered and
    then stopped is the camera's doing, so the WARN says that instead of the transport's limit."""
    stats = CameraStatistics("front", window_s=1.0)
    stats.subscribed(0.0)
    never = stats.to_status(STALE_INPUT_S + 1.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert "shared-memory segment" in never.message
    for i in range(5):
        stats.image_received(10.0 + i * 0.1, age_s=0.003)
    stopped = stats.to_status(10.4 + STALE_INPUT_S + 1.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert stopped.level == DiagnosticStatus.WARN
    assert "after 5 received" in stopped.message and "the camera stopped sending" in stopped.message
    assert "shared-memory segment" not in stopped.message
    gone = stats.to_status(10.4 + STALE_INPUT_S + 2.0, "node", dropped=0, image_topic=("/front/image", 0))
    assert "after 5 received: /front/image has no publisher any more" in gone.message and "remap" not in gone.message
    # a driver restarted without the large-image profile: its frames never arrive, and that is the cause named
    restarted = stats.to_status(10.4 + STALE_INPUT_S + 3.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert "shared-memory segment" in restarted.message


def test_track_ids_issued_are_reported_once_parts_are_tracked():
    stats = CameraStatistics("front", window_s=1.0)
    stats.objects_published([dataclasses.replace(d, track_id=0) for d in detections()])
    assert "track ids issued" not in {kv.key for kv in stats.to_status(0.0, "node", dropped=0).values}
    stats.objects_published([dataclasses.replace(d, track_id=7) for d in detections()])
    stats.objects_published([dataclasses.replace(d, track_id=3) for d in detections()])
    values = {kv.key: kv.value for kv in stats.to_status(0.0, "node", dropped=0).values}
    assert values["track ids issued"] == "7"


def test_a_camera_whose_frames_outgrew_the_transport_is_told_so_while_its_camera_info_arrives():
    """Frames over the Fast DDS limit vanish without a log; CameraInfo (small) still arrives and says the
    new size, so the node can name the cause."""
    stats = CameraStatistics("front", window_s=1.0)
    stats.subscribed(0.0)
    for i in range(5):
        stats.camera_info_received(i * 0.1, 640, 480)
        stats.image_received(i * 0.1, age_s=0.003, size=(640, 480, 640 * 480 * 3))
    for i in range(30):  # the driver switched to 4000x3000: only camera_info comes through
        stats.camera_info_received(1.0 + i * 0.1, 4000, 3000)
    status = stats.to_status(4.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert status.level == DiagnosticStatus.WARN
    assert "camera_info still arrives and describes 4000x3000 images (the last image was 640x480)" in status.message
    assert "34.3 MiB, over the 16 MiB" in status.message and "image/compressed" in status.message
    # a camera that stopped with its size unchanged is not blamed on the transport
    stopped = CameraStatistics("rear", window_s=1.0)
    for i in range(5):
        stopped.camera_info_received(i * 0.1, 640, 480)
        stopped.image_received(i * 0.1, age_s=0.003, size=(640, 480, 640 * 480 * 3))
    stopped.camera_info_received(3.9, 640, 480)
    assert "the camera stopped sending" in stopped.to_status(4.0, "node", 0, ("/rear/image", 1)).message


def test_stamps_left_out_of_the_latency_are_counted_and_warned():
    stats = CameraStatistics("front", window_s=5.0)
    for i in range(5):
        stats.image_received(i * 0.1, age_s=None)
        stats.stamp_unusable(i * 0.1, "stamp in the future")
        stats.result_published(i * 0.1, latency_s=None, inference_s=0.02, in_node_s=0.001)
    status = stats.to_status(0.5, "node", dropped=0)
    values = {kv.key: kv.value for kv in status.values}
    assert values["latency median (ms)"] == "n/a" and values["stamps left out of latency"] == "5"
    assert status.level == DiagnosticStatus.WARN and "(stamp in the future)" in status.message
    assert stats.to_status(6.0, "node", dropped=0).message != status.message, "an old problem is history"


def test_a_camera_silent_for_incompatible_qos_is_told_so():
    stats = CameraStatistics("front", window_s=1.0)
    stats.subscribed(0.0)
    stats.qos_incompatible(0.5, "/front/image", "RELIABILITY")
    status = stats.to_status(STALE_INPUT_S + 1.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert "offers QoS incompatible" in status.message and "shared-memory" not in status.message
    assert "qos_overrides./front/image.subscription.reliability" in status.message

"""/diagnostics tells a camera topic that has a publisher but delivers nothing (a frame larger than
the sender's Fast DDS shared-memory segment vanishes without a log) from one without a publisher."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from node_harness import Harness
from node_harness import start_node as start_tiny_node
from sensor_msgs.msg import Image


def test_a_publisher_that_sends_no_frame_is_named_with_the_likely_cause_and_fix(context, graph_dir):
    harness = Harness(context)
    node = start_tiny_node(context, graph_dir, "silent", cameras=["front", "side"], **{"diagnostics.period_s": 0.2})
    harness.add_node(node)
    harness.publisher(Image, "/silent/front/image")  # a real publisher that never publishes; side has none
    diagnostics = harness.record(DiagnosticArray, "/diagnostics")

    def camera_status(name: str) -> DiagnosticStatus | None:
        for array in reversed(diagnostics):
            for status in array.status:
                if status.name.endswith(f"camera {name}"):
                    return status
        return None

    try:
        harness.spin_for(1.0)
        early = camera_status("front")
        assert early is not None and early.message == "no image received yet", "no verdict before 2 s of silence"
        assert harness.spin_until(lambda: "although" in getattr(camera_status("front"), "message", ""), 10.0)
        front, side = camera_status("front"), camera_status("side")
        assert front.level == DiagnosticStatus.WARN
        assert "although /silent/front/image has 1 publisher(s)" in front.message
        assert "shared-memory segment" in front.message and "segment_size" in front.message
        assert {v.key: v.value for v in front.values}["image publishers"] == "1"
        assert side.level == DiagnosticStatus.WARN
        assert "no publisher on /silent/side/image" in side.message
    finally:
        node.destroy_node()
        harness.close()

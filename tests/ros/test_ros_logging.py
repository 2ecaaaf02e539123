"""What the ROS-free layers log (export progress, engine builds, skipped artifacts) reaches the ROS log."""

from __future__ import annotations

import logging

import rclpy
from node_harness import Harness
from rcl_interfaces.msg import Log

from dinov2_ros.ros.ros_logging import forward_package_logs, stop_forwarding


def test_package_log_records_reach_rosout_from_the_node_with_their_severity(context):
    harness = Harness(context)
    node = rclpy.create_node("forwarding_node", context=context)
    harness.add_node(node)
    received = harness.record(Log, "/rosout")
    handler = forward_package_logs(node)
    try:
        harness.spin_for(0.5)  # discovery
        logging.getLogger("dinov2_ros.runtime.backend_opener").info("exporting graph '%s' ...", "tiny")
        logging.getLogger("dinov2_ros.export.engine_build").warning("TensorRT build: %d steps", 3)
        logging.getLogger("other_library").warning("not ours")
        assert harness.spin_until(lambda: len([m for m in received if m.name == "forwarding_node"]) >= 2, 10.0)
    finally:
        stop_forwarding(handler)
        node.destroy_node()
        harness.close()
    ours = {(m.msg, m.level) for m in received if m.name == "forwarding_node"}
    assert ("exporting graph 'tiny' ...", Log.INFO) in ours
    assert ("TensorRT build: 3 steps", Log.WARN) in ours
    assert not [m for m in received if m.msg == "not ours"]

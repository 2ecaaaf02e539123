"""`spin_node`'s exit for a stop signal that lands inside rclpy's message conversion.

A SIGINT arriving while rclpy converts a message from C++ (take_message) raises the handler's
KeyboardInterrupt inside pybind11, which re-raises it as "RuntimeError: Unable to convert call
argument '0' to Python object" (seen once in 20 stops by an outside trial). The race cannot be
timed here, so `rclpy.spin` is replaced by one that delivers the signal to the real handler and then
raises as rclpy did; the node and rclpy's init and shutdown are real.
"""

from __future__ import annotations

import signal

import pytest
import rclpy
from rclpy.node import Node

from dinov2_ros.ros import node_main

pytestmark = pytest.mark.dds  # rclpy's init and a node, as the executable has them


@pytest.fixture(autouse=True)
def restore_signals(monkeypatch):
    handlers = {stop: signal.getsignal(stop) for stop in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(node_main, "_stop_requested", False, raising=False)
    yield
    for stop, handler in handlers.items():
        signal.signal(stop, handler)


def test_a_stop_signal_inside_message_conversion_is_a_clean_stop(monkeypatch):
    def spin_interrupted_in_take_message(node) -> None:
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # the handler spin_node installed
        except KeyboardInterrupt:
            raise RuntimeError("Unable to convert call argument '0' to Python object") from None

    monkeypatch.setattr(rclpy, "spin", spin_interrupted_in_take_message)
    assert node_main.spin_node(lambda: Node("stopped_mid_take"), "stopped_mid_take", args=[]) == 0


def test_a_runtime_error_without_a_stop_signal_is_still_raised(monkeypatch):
    def failing_spin(node) -> None:
        raise RuntimeError("a real fault")

    monkeypatch.setattr(rclpy, "spin", failing_spin)
    with pytest.raises(RuntimeError, match="a real fault"):
        node_main.spin_node(lambda: Node("faulty"), "faulty", args=[])

"""The ROS-free layers log through Python logging; a node forwards those records to its ROS logger.

Export progress, TensorRT build phases, engine-cache and artifact-store decisions come from
`dinov2_ros.runtime` and `dinov2_ros.model` loggers, which nothing configures inside a ROS node: without
this, `ros2 launch` shows nothing for the minutes an export or engine build takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rclpy.node import Node

PACKAGE_LOGGER = "dinov2_ros"


class RosLogHandler(logging.Handler):
    """Emits each record on `node.get_logger()` at the matching severity."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._node = node
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        if not self._node.context.ok():  # after Ctrl-C: rclpy would print "Failed to publish log message"
            return
        try:
            message = record.getMessage()
            if record.levelno >= logging.ERROR:
                self._logger.error(message)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(message)
            elif record.levelno >= logging.INFO:
                self._logger.info(message)
            else:
                self._logger.debug(message)
        except Exception:  # a log line must never take the node down
            self.handleError(record)


def forward_package_logs(node: Node) -> RosLogHandler:
    """Forward the package's INFO-and-above records to `node`'s ROS logger; remove the handler when done."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    handler = RosLogHandler(node)
    logger.addHandler(handler)
    return handler


def stop_forwarding(handler: RosLogHandler) -> None:
    logging.getLogger(PACKAGE_LOGGER).removeHandler(handler)


def while_running(node: Node) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """(info, warning) on `node`'s logger for background threads (an export's progress, a graph
    opening), dropped once its context has shut down (Ctrl-C), where rclpy would print "Failed to
    publish log message to rosout" for each line a thread still gives before the node stops it. Each
    severity logs from a call site of its own: an rclpy logger refuses a call site that changes severity."""
    logger = node.get_logger()

    def info(message: str) -> None:
        if node.context.ok():
            logger.info(message)

    def warning(message: str) -> None:
        if node.context.ok():
            logger.warning(message)

    return info, warning

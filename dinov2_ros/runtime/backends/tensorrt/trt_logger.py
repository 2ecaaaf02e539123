"""One TensorRT logger per process, forwarding TensorRT's own messages to Python logging.

TensorRT keeps the first logger a builder or runtime is made with for the whole process, so the builder
and every runtime share this one. Its messages go to the `dinov2_ros.runtime.backends.tensorrt.trt`
logger, which a ROS node forwards to its own log (ros/ros_logging.py) instead of stderr: errors and
warnings at their level, TensorRT's INFO and VERBOSE (hundreds of lines per build) at DEBUG.
"""

from __future__ import annotations

import logging

LOG = logging.getLogger(__name__.rsplit(".", 1)[0] + ".trt")

# ILogger.Severity member -> Python logging level
LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.DEBUG,
    "VERBOSE": logging.DEBUG,
}
# every `tensorrt` name the logger touches (tests check each TensorRT version's bindings for them)
LOGGER_API = ("ILogger", *(f"ILogger.Severity.{name}" for name in LEVELS))

_loggers: dict[int, tuple[object, object]] = {}  # id(tensorrt module) -> (module, its logger)


def tensorrt_logger(trt):
    """The process's ILogger for the `tensorrt` module `trt`, made on first use."""
    if id(trt) not in _loggers:
        levels = {getattr(trt.ILogger.Severity, name): level for name, level in LEVELS.items()}

        class ForwardingLogger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity, msg) -> None:
                LOG.log(levels.get(severity, logging.WARNING), "TensorRT: %s", msg)

        _loggers[id(trt)] = (trt, ForwardingLogger())
    return _loggers[id(trt)][1]

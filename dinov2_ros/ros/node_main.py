"""The standard `main()` of this package's executables: init, spin, clean shutdown on Ctrl-C or SIGTERM;
and a lifecycle node brought to active, as its executable does with autostart.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group, and `ros2 launch` then
forwards another SIGINT (and, later, SIGTERM) to each node it started, often a few milliseconds
apart: the first stops the node, and every later one is ignored, wherever it lands, so the cleanup
(ending the worker and the export children, destroying the endpoints) runs to its end and the
process exits 0. The handler that does this is installed before rclpy.init, so rclpy's own handlers
(which wake the executor) chain to it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Create the node and spin it until shutdown; 1 when its configuration is refused (a ValueError,
    or rclpy's ParameterException for a parameter of the wrong type or out of its range)."""
    node = None
    try:
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, _stop)
        rclpy.init(args=args)
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # a stop signal that lands while rclpy converts a message (take_message) surfaces as pybind11's
        # "Unable to convert call argument ... to Python object", and rclpy raises RCLError instead of
        # ExternalShutdownException when SIGTERM lands mid-wait: both are the stop, not a fault
        if not _stop_requested and (node is None or rclpy.ok()):  # e.g. rclpy.init refusing the ROS arguments
            raise
    except ConfigurationError:  # the node logged why, in one line, when its configure failed
        return 1
    except (ValueError, ParameterException) as error:  # a configuration the node cannot run with, e.g.
        # `-p tracking.lost_timeout_s:=2` (an integer for a double): one line saying what to change
        rclpy.logging.get_logger(name).fatal(str(error))
        return 1
    finally:
        _ignore_stop_signals()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


_stop_requested = False  # a SIGINT or SIGTERM arrived: what is raised from here on is the stop


def _stop(signum, frame) -> None:
    """The first SIGINT or SIGTERM: stop (as Ctrl-C does), and ignore the ones after it."""
    global _stop_requested
    _stop_requested = True
    _ignore_stop_signals()
    raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    """From here on the process is stopping: a further SIGINT or SIGTERM must not cut its cleanup short
    (a KeyboardInterrupt inside it would kill the process with exit -2). Python skips a signal whose
    handler is SIG_IGN even when it arrived before this call and has not been handled yet."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)


class ConfigurationError(ValueError):
    """A lifecycle node refused its configuration, and logged why; the message is the reason (what to
    change), the cause the node's `configure_error`."""


def bring_up(node) -> None:
    """Configure and activate a lifecycle `node`, what an executable does with autostart (the default).

    Raises ConfigurationError when configure failed (a bad setting, a missing file, an offline
    download: the node has logged it in one line), or RuntimeError when activation fails.
    """
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        error = node.configure_error
        if error is None:
            raise RuntimeError(f"configuring {node.get_name()} failed: see its log")
        raise ConfigurationError(str(error)) from error
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        raise RuntimeError(f"activating {node.get_name()} failed: see its log")


def started(node):
    """`node` brought up when its `autostart` setting says so (destroyed if that fails), else left
    unconfigured for a lifecycle manager."""
    if not node.settings.autostart:
        node.get_logger().info("autostart is false: unconfigured, waiting for a lifecycle manager")
        return node
    try:
        bring_up(node)
    except BaseException:
        node.destroy_node()
        raise
    return node

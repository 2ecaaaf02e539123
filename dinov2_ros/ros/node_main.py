"""The standard `main()` of this package's executables: init, spin, clean shutdown on Ctrl-C or SIGTERM;
and a lifecycle node brought to active, as its executable does with autostart."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Create the node and spin it until shutdown; 1 when its configuration is refused (a ValueError,
    or rclpy's ParameterException for a parameter of the wrong type or out of its range)."""
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if rclpy.ok():
            raise
        # rclpy raises RCLError instead of ExternalShutdownException when SIGTERM lands mid-wait
    except (ValueError, ParameterException) as error:  # a configuration the node cannot run with, e.g.
        # `-p tracking.lost_timeout_s:=2` (an integer for a double): one line saying what to change
        rclpy.logging.get_logger(name).fatal(str(error))
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def bring_up(node) -> None:
    """Configure and activate a lifecycle `node`, what an executable does with autostart (the default).

    Raises the error that refused the configuration (the node's `configure_error`: a ValueError says
    what to change), or RuntimeError when activation fails.
    """
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        raise node.configure_error or RuntimeError(f"configuring {node.get_name()} failed: see its log")
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

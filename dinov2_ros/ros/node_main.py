"""The standard `main()` of this package's executables: init, spin, clean shutdown on Ctrl-C or SIGTERM."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
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

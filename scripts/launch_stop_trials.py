#!/usr/bin/env python3
"""Stop `ros2 launch` the way a terminal's Ctrl-C does, N times, and count what a user would see.

A terminal sends SIGINT to its whole foreground process group: `ros2 launch` and every node it started
get it at once, and launch then forwards its own SIGINT (and later SIGTERM) to each node. Each try
starts the launch in a process group of its own, waits for a line that says the system is up, sends
SIGINT to the group, and counts: the exit code, tracebacks, "process has died", "terminate called",
"Failed to publish log message" (a node logging after rclpy shut down), and processes left over.

Needs a sourced ROS 2 with this package installed (colcon); CI has no `ros2` command, so
tests/ros/test_node_shutdown.py covers the node's side there.

    scripts/launch_stop_trials.py --case demo --tries 20
    scripts/launch_stop_trials.py --case perception --tries 20 --graph-dir ~/.cache/dinov2_ros/graphs
    scripts/launch_stop_trials.py --case export --tries 5     # Ctrl-C during the first graph export
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

PERCEPTION = "ros2 launch dinov2_ros perception.launch.py weights:=random depth_weights:=random width:=640 height:=480"
CASES = {  # what runs, the log line that says it is up, how long to let it run after that
    "perception": (PERCEPTION + " graph_dir:={graph_dir}", "active: subscribed", 2.0),
    "export": (PERCEPTION + " graph_dir:={graph_dir}", "export 1/6", 1.0),
    "demo": ("ros2 launch dinov2_ros demo.launch.py rviz:=false", "demo: taught", 2.0),
}
COUNTED = {
    "tracebacks": "Traceback",
    "died": "process has died",
    "terminate": "terminate called",
    "rosout": "Failed to publish log message",
}


def left_in(group: int) -> list[str]:
    """The processes still alive in process group `group`."""
    table = subprocess.run(["ps", "-eo", "pid,pgid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [line.strip() for line in table if line.split()[1] == str(group)]


def trial(command: str, ready: str, after_s: float, timeout_s: float = 300.0) -> dict:
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        process = subprocess.Popen(shlex.split(command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while ready not in Path(log.name).read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        came_up = ready in Path(log.name).read_text()
        time.sleep(after_s)
        os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
        try:
            code: int | str = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = "no exit within 60 s"
        time.sleep(1.0)
        left = left_in(process.pid)
        for line in left:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        text = Path(log.name).read_text()
    result = {"up": came_up, "exit": code, **{key: text.count(line) for key, line in COUNTED.items()}, "left": left}
    result["clean"] = came_up and code == 0 and not left and not any(result[key] for key in COUNTED)
    if not result["clean"]:
        result["log tail"] = text[-2500:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--graph-dir", type=Path, help="the artifact store (export: emptied before each try)")
    args = parser.parse_args()
    if shutil.which("ros2") is None:
        parser.error("no `ros2` command: source your ROS 2 installation and this workspace's install/setup.bash")
    graph_dir = args.graph_dir or Path(tempfile.mkdtemp(prefix="dinov2_ros_stop_trials_"))
    command, ready, after_s = CASES[args.case]
    clean = 0
    for index in range(1, args.tries + 1):
        if args.case == "export":
            shutil.rmtree(graph_dir, ignore_errors=True)
        result = trial(command.format(graph_dir=graph_dir), ready, after_s)
        clean += result["clean"]
        print(f"{args.case} {index}: " + ", ".join(f"{k} {v}" for k, v in result.items() if k != "log tail"))
        if "log tail" in result:
            print(result["log tail"])
    print(f"{args.case}: clean {clean} of {args.tries}")
    return 0 if clean == args.tries else 1


if __name__ == "__main__":
    raise SystemExit(main())

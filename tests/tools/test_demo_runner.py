"""`dinov2-ros demo` (the README's run command) starts what launch/demo.launch.py starts, teaches the
synthetic parts through the real add_class service and finds them in the node's real output."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from node_harness import REPO

from dinov2_ros.tools.demo import demo_runner


def _launch_constant(name: str):
    tree = ast.parse((REPO / "launch" / "demo.launch.py").read_text())
    return next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == name)


def test_demo_runner_wires_the_topics_demo_launch_wires():
    assert _launch_constant("DEMO_TOPICS") == demo_runner.DEMO_TOPICS
    launch_source = (REPO / "launch" / "demo.launch.py").read_text()
    assert f'("ground_truth", "{demo_runner.GROUND_TRUTH_TOPIC}")' in launch_source


def test_perception_command_passes_the_config_then_explicit_random_weights():
    command = demo_runner.perception_command(demo_runner.DemoSettings())
    ros_args = command[command.index("--ros-args") + 1 :]
    assert ros_args[ros_args.index("--params-file") + 1] == str(REPO / "config" / "perception.yaml")
    assert ros_args.index("--params-file") < ros_args.index("model.weights:=random") - 1
    assert "model.depth_weights:=random" in ros_args
    assert f"image:={demo_runner.DEMO_TOPICS['image']}" in ros_args
    assert not [arg for arg in ros_args if arg.startswith("model.graph_dir")], "the config's store by default"
    elsewhere = demo_runner.perception_command(demo_runner.DemoSettings(graph_dir="/tmp/store"))
    assert "model.graph_dir:=/tmp/store" in elsewhere


@pytest.mark.subprocess
def test_demo_teaches_the_parts_and_finds_them(tmp_path):
    """The whole demo, vits14 with random weights exported afresh into an empty home: about a minute.
    Started as the README says, from a folder holding a `dinov2_ros/` clone (as ~/ros2_ws/src does),
    which must not shadow the package in the processes the demo starts."""
    env = {**os.environ, "HOME": str(tmp_path)}
    (tmp_path / "dinov2_ros").mkdir()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dinov2-ros")), "demo", "--duration", "17", "--startup-timeout", "400"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "RANDOM encoder and depth weights" in output
    assert re.search(r"demo: taught '\w+' \(example 1 of 3\) through dinov2/add_class", output), output[-4000:]
    summary = re.search(r"parts of taught classes found (\d+)/(\d+), detections correct (\d+)/(\d+)", output)
    assert summary, output[-4000:]
    found, truths, correct, _detections = map(int, summary.groups())
    # Random vits14 weights: taught parts are found by colour and texture, well in some scenes and not at
    # all in others (scene 5 of seed 0: two background-sized boxes). Which scenes a run sees depends on
    # how long the export took (the camera's scenes change every 8 s from its start), so the run spans
    # at least two scenes: their recall measured 0.2-0.86 for every pair of consecutive scenes 0-8
    # ("random" is one seeded network, model/random_weights.py); detection quality itself is held in
    # tests/perception.
    assert truths > 0 and found / truths >= 0.15, summary.group(0)
    assert correct > 0, summary.group(0)
    assert "Traceback" not in output


@pytest.mark.subprocess
def test_demo_monitor_executable_of_demo_launch_reports_and_stops_cleanly():
    """demo.launch.py's `demo_monitor`: logs its report each second, exits 0 on Ctrl-C."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from dinov2_ros.tools.demo.demo_runner import monitor_main; sys.exit(monitor_main())",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(4.0)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert re.search(r"\[dinov2_demo_monitor\]: \[ *\d+\.\d s\] 0 outputs/s", output), output

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

from node_harness import REPO

from dinov2_ros.ros import demo_runner


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


def test_demo_teaches_the_parts_and_finds_them(tmp_path):
    """The whole demo, vits14 with random weights exported afresh into an empty home: about a minute."""
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "dinov2_ros.cli", "demo", "--duration", "6", "--startup-timeout", "400"],
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
    # Random vits14 weights: taught parts are found by colour and texture. "random" is now one seeded
    # network (model/random_weights.py); its recall here measured 0.33-0.38 in 6-20 s runs on a quiet
    # machine (unseeded draws ranged 0.3-0.8, so the earlier 0.5 bar failed on unlucky draws), with
    # precision 0.2-0.5 (split and duplicate boxes); detection quality itself is tested in tests/perception.
    assert truths > 0 and found / truths >= 0.2, summary.group(0)
    assert correct > 0, summary.group(0)
    assert "Traceback" not in output


def test_demo_monitor_executable_of_demo_launch_reports_and_stops_cleanly():
    """demo.launch.py's `demo_monitor`: logs its report each second, exits 0 on Ctrl-C."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from dinov2_ros.ros.demo_runner import monitor_main; sys.exit(monitor_main())",
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

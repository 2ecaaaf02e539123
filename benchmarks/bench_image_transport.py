"""Camera-sized images between two processes: Fast DDS's default against config/fastdds_large_images.xml.

    .venv/bin/python benchmarks/bench_image_transport.py [--seconds 5] [--rate 30]

For each sender configuration (default, the shipped profile) and QoS (best effort, reliable), a
talker process publishes 640x480 rgb8 frames stamped with the wall clock at `--rate` Hz and a listener
process counts them for `--seconds` after its first frame. Prints frames delivered and the delivery
latency (stamp -> subscription callback), median and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOPIC = "bench/transport_frames"


def _qos(reliable: bool):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=1, reliability=reliability, history=HistoryPolicy.KEEP_LAST)


def talk(rate_hz: float, reliable: bool) -> None:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_talker")
    publisher = node.create_publisher(Image, TOPIC, _qos(reliable))
    msg = Image(height=480, width=640, encoding="rgb8", step=1920)
    msg.data = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8).tobytes()
    next_time = time.monotonic()
    while True:  # until the parent stops it
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        publisher.publish(msg)
        next_time += 1.0 / rate_hz
        time.sleep(max(0.0, next_time - time.monotonic()))


def listen(seconds: float, reliable: bool) -> None:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_listener")
    latency_ms: list[float] = []
    arrivals: list[float] = []

    def received(msg: Image) -> None:
        arrivals.append(time.monotonic())
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latency_ms.append((time.time_ns() - stamp) / 1e6)

    node.create_subscription(Image, TOPIC, received, _qos(reliable))
    deadline = time.monotonic() + 15.0 + seconds  # discovery, then the window
    while time.monotonic() < deadline and not (arrivals and arrivals[-1] - arrivals[0] >= seconds):
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"latency_ms": latency_ms[1:], "window_s": arrivals[-1] - arrivals[0] if arrivals else 0.0}))


def measure(profile: bool, reliable: bool, args) -> str:
    from dinov2_ros.ros.dds_profile import PROFILE_FILE, PROFILE_VARIABLES, profile_environment

    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    sender_env = {**env, **(profile_environment(REPO / "config" / PROFILE_FILE, env) if profile else {})}
    qos = ["--reliable"] if reliable else []
    command = [sys.executable, __file__, "--seconds", str(args.seconds), "--rate", str(args.rate), *qos]
    listener = subprocess.Popen([*command, "--role", "listen"], env=env, stdout=subprocess.PIPE, text=True)
    talker = subprocess.Popen([*command, "--role", "talk"], env=sender_env)
    try:
        out, _ = listener.communicate(timeout=60)
    finally:
        talker.kill()
        talker.wait()
    result = json.loads(out)
    import numpy as np

    latency = np.array(result["latency_ms"])
    expected = result["window_s"] * args.rate
    if latency.size == 0:
        return "no frame arrived"
    return (
        f"{latency.size}/{expected:.0f} frames ({latency.size / max(expected, 1):.0%}), "
        f"latency median {np.median(latency):.1f} ms, p99 {np.percentile(latency, 99):.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--reliable", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=("talk", "listen"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "talk":
        talk(args.rate, args.reliable)
    elif args.role == "listen":
        listen(args.seconds, args.reliable)
    else:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        print(f"640x480 rgb8 at {args.rate:g} Hz between two processes, {os.cpu_count()} CPUs")
        for profile in (False, True):
            for reliable in (False, True):
                sender = "shipped profile" if profile else "default Fast DDS"
                qos = "reliable" if reliable else "best effort"
                print(f"{sender:<17} {qos:<12} {measure(profile, reliable, args)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

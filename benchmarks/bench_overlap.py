"""Output rate of the node's two worker threads (ros/frame_worker.py) against one thread doing both
stages in turn, in the same run, with a graph call that stands for a GPU's.

The graph call is a stand-in that sleeps `--graph-ms` with the GIL released, as a TensorRT or CUDA
call does while the device runs (this machine has no GPU), and returns the recorded outputs of the
real vits14 graph for a 640x480 tabletop with ten parts (bench_node.ReplayedGraph). Everything else is
the node's: message -> frame (frame_intake), FramePipeline.infer / finish (decode, track, oriented
boxes), the two object messages. Frames arrive faster than either stage, and the worker runs at its
highest output rate (scheduling.wait_for_new_frame: false). Prints the CPU path alone (median, p99),
both output rates and the target 0.9 / max(graph call, CPU path).

    .venv/bin/python benchmarks/bench_overlap.py --graph-ms 5 --seconds 5
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from bench_node import CAMERA, HEIGHT, TEN_PARTS, WIDTH, ReplayedGraph, node_parameters
from std_msgs.msg import Header

from dinov2_ros.export.graph_builder import GraphBuilder
from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.perception.object_tracking import ObjectTracker
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.ros.frame_intake import to_camera_frame
from dinov2_ros.ros.frame_slots import BatchPolicy, CameraSlot
from dinov2_ros.ros.frame_worker import FrameWorker
from dinov2_ros.ros.image_conversion import array_to_image
from dinov2_ros.ros.messages.detections import to_detection2d_array, to_detection3d_array
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.tools.demo.synthetic_camera_node import camera_info_for
from dinov2_ros.tools.latency import Latency
from dinov2_ros.tools.scenes.tabletop_scenes import render_tabletop, visible_boxes


class SleepingGraph(ReplayedGraph):
    """ReplayedGraph whose call sleeps `graph_s` with the GIL released: a GPU call's wait (+30 % per
    extra frame of a batch, as a GPU batches), its outputs repeated for every frame of the batch."""

    graph_s = 0.005

    def infer(self, inputs):
        frames = inputs["images"].shape[0]
        time.sleep(self.graph_s * (1 + 0.3 * (frames - 1)))
        return {name: np.repeat(array, frames, axis=0) for name, array in super().infer(inputs).items()}


class NodeStages:
    """The node's two stages on the cameras' slots (PerceptionNode._infer / _finish without ROS)."""

    def __init__(self, graph: SleepingGraph, scene, cameras: tuple[str, ...] = ("camera",)) -> None:
        spec = graph.spec
        store = PrototypeStore("bench:replayed", (spec.input_height, spec.input_width), spec.embed_dim)
        self.pipeline = FramePipeline(
            lambda height, width: graph, store, class_names={0: "part"}, tracker=ObjectTracker(1.0)
        )
        self.image = array_to_image(scene.image_rgb, "rgb8", Header(frame_id="camera_optical_frame"))
        self.depth = array_to_image((scene.depth * 1000).astype(np.uint16), "16UC1", self.image.header)
        self.info = camera_info_for(scene.K, WIDTH, HEIGHT, self.image.header)
        self.slots = {name: CameraSlot(name, needs_depth=True, tolerance_ns=0, timeout_ns=10**9) for name in cameras}
        self.slot = self.slots[cameras[0]]
        self.inputs = {name: SimpleNamespace(**{**vars(CAMERA), "name": name}) for name in cameras}
        self.outputs = 0
        self.latencies_ms: dict[str, list[float]] = {name: [] for name in cameras}

    def put(self, stamp_ns: int, camera: str | None = None) -> None:
        slot = self.slots[camera] if camera else self.slot
        slot.put_image(stamp_ns, self.image, time.monotonic_ns())  # drivers publish the image first
        slot.put_camera_info(stamp_ns, self.info)
        slot.put_depth(stamp_ns, self.depth)

    def infer(self, batch):
        yield batch, self.pipeline.infer([to_camera_frame(paired, self.inputs[paired.camera]) for paired in batch])

    def finish(self, inferred) -> None:
        batch, graphs = inferred
        for paired, result in zip(batch, self.pipeline.finish(graphs), strict=True):
            to_detection3d_array(result, paired.image.header)
            to_detection2d_array(result, paired.image.header)
            self.outputs += 1
            self.latencies_ms[paired.camera].append((time.monotonic_ns() - paired.received_ns) / 1e6)


def overlapped_rate(stages: NodeStages, seconds: float) -> float:
    """Outputs per second of FrameWorker fed a frame every 0.5 ms."""
    worker = FrameWorker(
        [stages.slot], stages.infer, stages.finish, lambda *_: None, lambda: BatchPolicy(wait_for_new_frame=False)
    )
    stop, stamp = threading.Event(), [0]

    def camera() -> None:
        while not stop.is_set():
            stamp[0] += 1
            stages.put(stamp[0])
            worker.wake()
            time.sleep(0.0005)

    feeder = threading.Thread(target=camera, daemon=True)
    feeder.start()
    time.sleep(0.5)  # warm-up: the first frames confirm the tracks
    start_outputs, start = stages.outputs, time.perf_counter()
    time.sleep(seconds)
    rate = (stages.outputs - start_outputs) / (time.perf_counter() - start)
    worker.stop()
    stop.set()
    feeder.join()
    return rate


def sequential_rate(stages: NodeStages, seconds: float) -> float:
    """Outputs per second of one thread taking the newest frame, inferring and finishing it in turn."""
    start_outputs, start, stamp = stages.outputs, time.perf_counter(), 10**9
    while time.perf_counter() - start < seconds:
        stamp += 1
        stages.put(stamp)
        for inferred in stages.infer([stages.slot.take(time.monotonic_ns())]):
            stages.finish(inferred)
    return (stages.outputs - start_outputs) / (time.perf_counter() - start)


def cpu_path(stages: NodeStages, frames: int) -> Latency:
    """Both stages without the graph call's sleep: what the CPU does per frame."""
    graph_s, SleepingGraph.graph_s = SleepingGraph.graph_s, 0.0
    seconds, stamp = [], 2 * 10**9
    for _ in range(frames):
        stamp += 1
        stages.put(stamp)
        begin = time.perf_counter()
        for inferred in stages.infer([stages.slot.take(time.monotonic_ns())]):
            stages.finish(inferred)
        seconds.append(time.perf_counter() - begin)
    SleepingGraph.graph_s = graph_s
    return Latency.of(seconds)


def camera_latencies(stages: NodeStages, cameras: dict[str, tuple[float, float]], seconds: float) -> dict[str, float]:
    """Median arrival -> objects built (ms) per camera, each sending at (rate Hz, phase s), through
    FrameWorker with the node's default scheduling and the pipeline's recent graph call."""
    policy = lambda: BatchPolicy(graph_call_ns=int(stages.pipeline.graph_call_s * 1e9))  # noqa: E731
    worker = FrameWorker([stages.slots[name] for name in cameras], stages.infer, stages.finish, lambda *_: None, policy)
    stop = threading.Event()

    def camera(name: str, rate_hz: float, phase_s: float) -> None:
        time.sleep(phase_s)
        stamp, start = 0, time.perf_counter()
        while not stop.is_set():
            stamp += 1
            stages.put(stamp, name)
            worker.wake()
            time.sleep(max(0.0, start + stamp / rate_hz - time.perf_counter()))

    for values in stages.latencies_ms.values():
        values.clear()
    threads = [threading.Thread(target=camera, args=(name, *c), daemon=True) for name, c in cameras.items()]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    worker.stop()
    for thread in threads:
        thread.join()
    return {name: float(np.median(stages.latencies_ms[name][5:])) for name in cameras}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph-ms", type=float, default=5.0, help="the stand-in graph call (GIL released)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured rate")
    parser.add_argument("--graph-dir", type=Path, default=Path(tempfile.gettempdir()) / "dinov2_ros_bench_graphs")
    args = parser.parse_args()
    settings = argparse.Namespace(variant="vits14", input=(224, 308), backend="onnxruntime", device="cpu", threads=0)
    backend = GraphBuilder(ModelSettings.from_values(node_parameters(settings, args.graph_dir))).open(HEIGHT, WIDTH)
    scene = render_tabletop(TEN_PARTS, tilt_deg=15.0, width=WIDTH, height=HEIGHT)
    visible, boxes = visible_boxes(scene)
    SleepingGraph.graph_s = args.graph_ms / 1e3
    graph = SleepingGraph(backend, scene.image_rgb, boxes, [scene.masks[i] for i in visible])
    stages = NodeStages(graph, scene, cameras=("front", "side"))
    backend.close()
    cpu = cpu_path(stages, 100)
    sequential = sequential_rate(stages, args.seconds)
    overlapped = overlapped_rate(stages, args.seconds)
    bound_ms = max(args.graph_ms, cpu.median_ms)
    print(f"10 objects, 640x480; graph call: a {args.graph_ms:.1f} ms sleep with the GIL released (a GPU's wait)")
    print(f"  CPU path per frame (both stages, no graph call)  {cpu}")
    print(f"  one thread, both stages in turn                  {sequential:6.1f} outputs/s")
    print(f"  two threads (FrameWorker)                        {overlapped:6.1f} outputs/s")
    print(f"  target 0.9 / max(graph call, CPU path median)    {900 / bound_ms:6.1f} outputs/s")
    alone = camera_latencies(stages, {"front": (15.0, 0.0)}, args.seconds)
    together = camera_latencies(stages, {"front": (15.0, 0.0), "side": (12.0, 0.031)}, args.seconds)
    print("two unsynchronised cameras of one size (15 Hz, and 12 Hz out of phase), median arrival -> objects:")
    print(f"  front alone                                      {alone['front']:6.1f} ms")
    print(f"  front / side together                            {together['front']:6.1f} / {together['side']:.1f} ms")
    print(f"  target: within one graph call of alone           {alone['front'] + args.graph_ms:6.1f} ms")


if __name__ == "__main__":
    main()

"""The node's two worker threads (ros/frame_worker.py) on real newest-frame slots, without DDS.

The graph call is a stand-in that sleeps with the GIL released: what a GPU backend's call does while
the device runs (TensorRT, ONNX Runtime CUDA), which this machine has no GPU to show. The finishing
stage is Python holding the GIL, as decoding, tracking and lifting are.
"""

from __future__ import annotations

import threading
import time

import pytest

from dinov2_ros.ros.frame_slots import BatchPolicy, CameraSlot
from dinov2_ros.ros.frame_worker import FrameWorker

GRAPH_S, FINISH_S = 0.005, 0.003


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Camera(threading.Thread):
    """Puts an image with its camera_info into `slot` every `period_s`, stamped 1, 2, 3, ..."""

    def __init__(self, slot: CameraSlot, wake, period_s: float) -> None:
        super().__init__(daemon=True)
        self.slot, self.wake, self.period_s, self.running = slot, wake, period_s, True

    def run(self) -> None:
        stamp = 0
        while self.running:
            stamp += 1
            self.slot.put_camera_info(stamp, "info")
            self.slot.put_image(stamp, f"image {stamp}", time.monotonic_ns())
            self.wake()
            time.sleep(self.period_s)


def _run(seconds: float, graph_s: float, finish_s: float, cameras: int = 1, policy: BatchPolicy | None = None):
    slots = [CameraSlot(f"c{i}", needs_depth=False, tolerance_ns=0, timeout_ns=10**9) for i in range(cameras)]
    finished: list[tuple[str, int, float]] = []

    def infer(batch):
        time.sleep(graph_s)  # the device runs; the GIL is free
        yield batch

    def finish(batch):
        _busy(finish_s)
        now_ns = time.monotonic_ns()
        finished.extend((paired.camera, paired.stamp_ns, now_ns, now_ns - paired.received_ns) for paired in batch)

    policy = policy or BatchPolicy()
    worker = FrameWorker(slots, infer, finish, lambda camera, rejection: None, lambda: policy)
    feeders = [Camera(slot, worker.wake, 0.0005) for slot in slots]
    for feeder in feeders:
        feeder.start()
    time.sleep(seconds)
    worker.stop()
    for feeder in feeders:
        feeder.running = False
    return finished


def test_finishing_a_batch_overlaps_the_next_graph_call():
    """Output rate at least 90 % of 1 / max(graph call, finishing), where one thread doing both in turn
    gets 1 / (graph call + finishing); measured at the highest output rate (wait_for_new_frame off)."""
    finished = _run(1.5, GRAPH_S, FINISH_S, policy=BatchPolicy(wait_for_new_frame=False))
    times_ns = [t for _, _, t, _ in finished[5:]]
    rate = (len(times_ns) - 1) / ((times_ns[-1] - times_ns[0]) / 1e9)
    assert rate >= 0.9 / max(GRAPH_S, FINISH_S), f"{rate:.0f} outputs/s"


@pytest.mark.parametrize("wait_for_new_frame", [True, False])
@pytest.mark.parametrize("graph_s, finish_s", [(GRAPH_S, FINISH_S), (0.002, 0.006)])
def test_each_camera_is_finished_in_order_and_never_from_a_backlog(graph_s, finish_s, wait_for_new_frame):
    finished = _run(0.6, graph_s, finish_s, cameras=2, policy=BatchPolicy(wait_for_new_frame=wait_for_new_frame))
    for camera in ("c0", "c1"):
        stamps = [stamp for name, stamp, _, _ in finished if name == camera]
        assert len(stamps) > 20 and stamps == sorted(set(stamps)), "in order, each frame once"
    ages_ms = sorted(age / 1e6 for _, _, _, age in finished)
    # the newest frame goes in: arrival to finished within about one pass of both stages (+ hand-overs)
    assert ages_ms[len(ages_ms) // 2] <= 2.5 * (graph_s + finish_s) * 1e3, ages_ms


def test_a_failing_batch_costs_that_batch_only():
    slot = CameraSlot("c0", needs_depth=False, tolerance_ns=0, timeout_ns=10**9)
    finished = []

    def infer(batch):
        if batch[0].stamp_ns % 3 == 0:
            raise RuntimeError("a bug")
        yield batch

    worker = FrameWorker([slot], infer, finished.extend, lambda camera, rejection: None, lambda: BatchPolicy())
    for stamp in range(1, 10):
        slot.put_camera_info(stamp, "info")
        slot.put_image(stamp, "image", time.monotonic_ns())
        worker.wake()
        time.sleep(0.02)
    worker.stop()
    assert [paired.stamp_ns for paired in finished] == [1, 2, 4, 5, 7, 8]


def _latencies(cameras, graph_s: dict[str, float], seconds: float = 1.5) -> dict[str, float]:
    """Median arrival -> finished (ms) per camera; `cameras` (name, period s, phase s); a batch makes one
    graph call per camera of `graph_s` (as cameras of different sizes do), or one for those of the same
    size (`graph_s` keyed "batch": the call, + 30 % per extra frame, as a GPU batches)."""
    slots = {name: CameraSlot(name, needs_depth=False, tolerance_ns=0, timeout_ns=10**9) for name, _, _ in cameras}
    ages: dict[str, list[float]] = {name: [] for name in slots}

    def infer(batch):
        if "batch" in graph_s:
            time.sleep(graph_s["batch"] * (1 + 0.3 * (len(batch) - 1)))
            yield batch
        else:
            for paired in batch:
                time.sleep(graph_s[paired.camera])
                yield [paired]

    def finish(batch):
        for paired in batch:
            _busy(0.001)
            ages[paired.camera].append((time.monotonic_ns() - paired.received_ns) / 1e6)

    # the node's policy: scheduling.* with its pipeline's recent graph call
    policy = BatchPolicy(graph_call_ns=int(min(graph_s.values()) * 1e9))
    worker = FrameWorker(list(slots.values()), infer, finish, lambda *_: None, lambda: policy)
    stop = threading.Event()

    def camera(name: str, period_s: float, phase_s: float) -> None:
        time.sleep(phase_s)
        stamp = 0
        while not stop.is_set():
            stamp += 1
            slots[name].put_camera_info(stamp, "info")
            slots[name].put_image(stamp, "image", time.monotonic_ns())
            worker.wake()
            time.sleep(period_s)

    threads = [threading.Thread(target=camera, args=c, daemon=True) for c in cameras]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    worker.stop()
    return {name: sorted(values)[len(values) // 2] for name, values in ages.items()}


def test_unsynchronised_cameras_stay_within_one_graph_call_of_their_latency_alone():
    """Two cameras of one size at 15 and 12 Hz, out of phase, on a 5 ms (GPU-like) graph call: neither
    waits for the other's frame longer than a quarter of the call (scheduling.batch_wait_s caps it too)."""
    graph = {"batch": GRAPH_S}
    alone = _latencies([("a", 1 / 15, 0.0)], graph)["a"]
    together = _latencies([("a", 1 / 15, 0.0), ("b", 1 / 12, 0.031)], graph)
    assert max(together.values()) <= alone + GRAPH_S * 1e3, (alone, together)


def test_a_camera_does_not_wait_for_another_cameras_graph_call():
    """Cameras of two sizes: each size's call is handed over as it ends, so the first camera's objects
    are finished while the second camera's 20 ms call runs."""
    calls = {"a": GRAPH_S, "b": 0.02}
    alone = _latencies([("a", 1 / 15, 0.0)], calls)["a"]
    together = _latencies([("a", 1 / 15, 0.0), ("b", 1 / 15, 0.0)], calls)
    assert together["a"] < alone + calls["b"] * 1e3 / 2, (alone, together)

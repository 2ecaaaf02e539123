"""Which image sizes each camera is served at, and opening their graphs off the worker thread.

Opening a graph for a new size may export it (torch, 18-26 s for vits14 here for the model's first
size; 3 s for each later one, composed from the stored core) and holds the model's memory for as
long as the node runs, so the node serves a bounded set of sizes: the sizes configured
per camera (`<camera>.width`, `<camera>.height`) are opened at configure time; a camera configured
with 0 x 0 learns its size from its first frame, whose graph is opened on a thread of its own while
the other cameras keep running. Any other size is refused, as is a size beyond `graphs.max_open`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.ros.node_parameters import CameraSettings
from dinov2_ros.runtime.graph_spec import GraphSpec

# the category of a frame skipped only because its graph is still being opened: counted apart from
# the rejected frames (nothing is wrong with it)
WAITING_FOR_GRAPH = "waiting for graph"


@dataclass(frozen=True)
class Refusal:
    """Why a frame is skipped: `category` for /diagnostics, `problem` for the warning throttle."""

    category: str
    problem: str
    detail: str


def _size(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


class GraphPreparation:
    """The expected size of each camera and the graphs opened for them (sizes are (height, width) pixels)."""

    def __init__(
        self, pipeline: FramePipeline, max_open: int, logger, export: Callable[[int, int], bool] | None = None
    ) -> None:
        """`logger`: the node's (info for progress, warning for a graph that cannot be opened);
        `export(height, width)` writes a missing graph into the store before it is opened, in a
        process of its own (graph_export.export_in_subprocess), True when it did."""
        self._pipeline = pipeline
        self._export = export
        self._max_open = max_open
        self._log = logger.info
        self._warn = logger.warning
        self._lock = threading.Lock()
        self._expected: dict[str, tuple[int, int]] = {}  # camera -> size, configured or learned
        self._configured: set[str] = set()  # the cameras whose size is a parameter, not learned
        self._opening: dict[tuple[int, int], tuple[threading.Thread, float]] = {}  # size -> (thread, start)
        self._failures: dict[tuple[int, int], str] = {}

    def prepare_configured(self, cameras: Sequence[CameraSettings]) -> None:
        """Open the graph of every configured camera size now, logging progress; ValueError beyond
        graphs.max_open, and what the opener raises (a missing export tool, bad weights)."""
        sizes: dict[tuple[int, int], list[str]] = {}
        for camera in cameras:
            if camera.size is not None:
                self._expected[camera.name] = camera.size
                self._configured.add(camera.name)
                sizes.setdefault(camera.size, []).append(camera.name)
        if len(sizes) > self._max_open:
            raise ValueError(
                f"the cameras are configured for {len(sizes)} image sizes ({', '.join(map(_size, sizes))}) but "
                f"graphs.max_open is {self._max_open}: raise graphs.max_open to {len(sizes)}, or give cameras one size"
            )
        for index, (size, names) in enumerate(sizes.items(), start=1):
            self._log(f"preparing graph {index}/{len(sizes)} for {_size(size)} frames (cameras {', '.join(names)}) ...")
            start = time.monotonic()
            spec = self._open_graph(size)
            self._log(f"graph {index}/{len(sizes)} '{spec.key}' ready in {time.monotonic() - start:.1f} s")

    def admit(self, camera: str, size: tuple[int, int]) -> Refusal | None:
        """None when a frame of `size` from `camera` can be processed now, else why it is skipped.

        The first frame of a camera without a configured size starts opening its graph on a thread
        of its own; that camera's frames are skipped (and counted) until the graph is open. When it
        cannot be opened, the camera learns its size again from its next frame of another size.
        """
        with self._lock:
            expected = self._expected.get(camera)
            if expected is None:
                if size in self._failures:
                    return self._readiness(size)
                if (refusal := self._over_limit(camera, size)) is not None:
                    return refusal
                self._expected[camera] = expected = size
                self._start_opening(camera, size)
            if size != expected:
                if camera in self._configured:
                    where = f"{camera}.width x {camera}.height"
                    fix = (
                        f"start the node with {camera}.width:={size[1]} {camera}.height:={size[0]} (read-only "
                        "parameters)"
                    )
                else:
                    where = "its first frame"
                    fix = (
                        "deactivate, clean up, configure and activate the node (its change_state service, or "
                        "`ros2 lifecycle set`), which learns the size again from the next frame"
                    )
                return Refusal(
                    "size",
                    f"size {_size(size)}",
                    f"the frame is {_size(size)} but this camera's frames are {_size(expected)} ({where}); frames "
                    "of other sizes are refused, as each size needs a graph of its own. Fix the driver's "
                    f"resolution, or {fix}",
                )
            return self._readiness(size)

    def _over_limit(self, camera: str, size: tuple[int, int]) -> Refusal | None:
        sizes = set(self._pipeline.graphs) | set(self._opening) | set(self._expected.values())
        if size in sizes or len(sizes) < self._max_open:
            return None
        return Refusal(
            "graph limit",
            f"graph limit at {_size(size)}",
            f"the frame is {_size(size)}, a new size, but graphs.max_open ({self._max_open}) sizes are served "
            f"already ({', '.join(map(_size, sorted(sizes)))}); raise graphs.max_open, or set {camera}.width and "
            f"{camera}.height to one of those sizes",
        )

    def _readiness(self, size: tuple[int, int]) -> Refusal | None:
        if size in self._failures:
            return Refusal(
                "graph failed",
                f"graph failed {_size(size)}",
                f"the graph for {_size(size)} frames could not be opened ({self._failures[size]}); fix that and "
                "configure the node again",
            )
        if size in self._opening:
            started = self._opening[size][1]
            return Refusal(
                WAITING_FOR_GRAPH,
                f"preparing {_size(size)}",
                f"the graph for {_size(size)} frames is being prepared (for {time.monotonic() - started:.0f} s); "
                "this camera's frames are skipped until it is ready, the other cameras keep running",
            )
        return None

    def _start_opening(self, camera: str, size: tuple[int, int]) -> None:
        """Open the graph of `size` on its own thread (one per size); call with the lock held."""
        if size in self._pipeline.graphs or size in self._opening:
            return
        self._log(
            f"camera '{camera}': preparing the graph for its {_size(size)} frames on a separate thread (set "
            f"{camera}.width and {camera}.height to prepare it at configure); the other cameras keep running"
        )
        thread = threading.Thread(target=self._open, args=(size,), name=f"dinov2_graph_{_size(size)}", daemon=True)
        self._opening[size] = (thread, time.monotonic())
        thread.start()

    def _open(self, size: tuple[int, int]) -> None:
        start = time.monotonic()
        try:
            spec = self._open_graph(size)
        except Exception as error:  # reported per frame of that size (Refusal "graph failed")
            with self._lock:
                self._failures[size] = f"{type(error).__name__}: {error}"
                del self._opening[size]
                # a camera that learned this size learns again from its next frame (one odd first
                # frame does not decide its size for good)
                for camera in [c for c, s in self._expected.items() if s == size and c not in self._configured]:
                    del self._expected[camera]
            self._warn(f"the graph for {_size(size)} frames could not be opened: {type(error).__name__}: {error}")
            return
        with self._lock:
            del self._opening[size]
        self._log(f"graph '{spec.key}' for {_size(size)} frames ready in {time.monotonic() - start:.1f} s")

    def _open_graph(self, size: tuple[int, int]) -> GraphSpec:
        if self._export is not None and self._export(*size):
            self._log(f"exported the graph for {_size(size)} frames in a separate process")
        return self._pipeline.open_graph(*size)

    def wait(self) -> None:
        """Wait for the graphs being opened (before the pipeline is closed)."""
        with self._lock:
            threads = [thread for thread, _ in self._opening.values()]
        for thread in threads:
            thread.join()

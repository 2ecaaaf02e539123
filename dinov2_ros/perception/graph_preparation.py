"""Which image sizes each camera is served at, and their graphs: made, opened, kept, failures remembered.

Opening a graph for a new size may first make it (`export`: the node runs `dinov2-ros export` in a
child process, 18-26 s for vits14 here for the model's first size, 3 s for each later one) and holds
the model's memory for as long as the pipeline runs, so a bounded set of sizes is served: the sizes
configured per camera are opened at once (`configure`); a camera without one learns its size from
its first frame. Any other size of that camera is refused, as is a size beyond `max_open`.

With `background` (the node), a learned size is opened on a thread of its own while the other
cameras keep running, and that camera's frames are refused as waiting meanwhile; without it (tools,
tests), the first frame of a size waits for its opening. A size that cannot be opened is remembered
with its reason, once, and not retried frame after frame; but a server that did not answer (a
ConnectionError: the Triton backend) is tried again, every RETRY_S, by the frames that keep coming.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from dinov2_ros.perception.rejection import WAITING_FOR_GRAPH, Rejection
from dinov2_ros.runtime.backends import Backend
from dinov2_ros.runtime.export_process import ExportCancelled
from dinov2_ros.runtime.graph_spec import GraphSpec

Size = tuple[int, int]  # (height, width) pixels
LOG = logging.getLogger(__name__)
RETRY_S = 5.0  # a backend whose server is unreachable (ConnectionError: Triton) is opened again after this


def _size(size: Size) -> str:
    return f"{size[1]}x{size[0]}"


class GraphPreparation:
    """The expected size of each camera and the backend opened for each size.

    `open_backend(height, width)` opens the backend of a size (runtime.backend_opener.BackendOpener.open).
    `export(height, width)`, when given, first makes what the store lacks for it, True when it did
    (the node's runtime.export_process.ChildExporter). `max_open` bounds the sizes served (None: no bound).
    `log` gets progress and `warn` the sizes that cannot be opened (the node's logger); `on_open(size)`
    runs after each size is opened (the node republishes the class names then).
    """

    def __init__(
        self,
        open_backend: Callable[[int, int], Backend],
        max_open: int | None = None,
        export: Callable[[int, int], bool] | None = None,
        background: bool = False,
        log: Callable[[str], None] = LOG.info,
        warn: Callable[[str], None] = LOG.warning,
        on_open: Callable[[Size], None] | None = None,
    ) -> None:
        self._open_backend = open_backend
        self._export = export
        self._max_open = max_open
        self._background = background
        self._log, self._warn, self._on_open = log, warn, on_open
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()  # one opening at a time; never held while frames run
        self._backends: dict[Size, Backend] = {}
        self._expected: dict[str, Size] = {}  # camera -> size, configured or learned
        self._configured: set[str] = set()  # the cameras whose size is a parameter, not learned
        self._opening: dict[Size, tuple[threading.Thread | None, float]] = {}  # size -> (thread, start)
        self._failures: dict[Size, str] = {}
        self._retry_at: dict[Size, float] = {}  # failures of a server that may come up (ConnectionError): when to retry
        self._closing = False  # an opening that fails now was stopped: not worth a warning

    @property
    def graphs(self) -> dict[Size, GraphSpec]:
        """The graphs opened so far, by (height, width)."""
        # list() copies in one step under the GIL: an opening thread may add a backend meanwhile
        return {size: backend.spec for size, backend in list(self._backends.items())}

    def backend(self, size: Size) -> Backend:
        """The open backend of `size` (admit the frame first)."""
        return self._backends[size]

    def configure(self, cameras: Mapping[str, Size | None]) -> None:
        """Open the graph of every configured camera size (camera name -> (height, width), or None to
        learn it from the first frame) now, logging progress. ValueError beyond `max_open`; what the
        opener raises (a missing export tool, bad weights), but a server that does not answer
        (ConnectionError), whose sizes are tried again as frames arrive."""
        sizes: dict[Size, list[str]] = {}
        for camera, size in cameras.items():
            if size is not None:
                self._expected[camera] = size
                self._configured.add(camera)
                sizes.setdefault(size, []).append(camera)
        if self._max_open is not None and len(sizes) > self._max_open:
            raise ValueError(
                f"the cameras are configured for {len(sizes)} image sizes ({', '.join(map(_size, sizes))}) but "
                f"graphs.max_open is {self._max_open}: raise graphs.max_open to {len(sizes)}, or give cameras one size"
            )
        for index, (size, names) in enumerate(sizes.items(), start=1):
            self._log(f"preparing graph {index}/{len(sizes)} for {_size(size)} frames (cameras {', '.join(names)}) ...")
            start = time.monotonic()
            try:
                spec = self.open_graph(*size)
            except ConnectionError as error:  # a server not up yet: the frames of this size try again
                self._warn(f"the graph for {_size(size)} frames could not be opened: {error}; tried again every "
                           f"{RETRY_S:.0f} s while frames arrive")  # fmt: skip
                continue
            self._log(f"graph {index}/{len(sizes)} '{spec.key}' ready in {time.monotonic() - start:.1f} s")

    def open_graph(self, height: int, width: int) -> GraphSpec:
        """Open the graph of `height` x `width` frames now, on this thread, and return its spec.

        Safe while frames of the sizes already open are processed: they never wait for an opening.
        Raises what the export or the opener raised; later calls raise ValueError naming it.
        """
        size = (height, width)
        if size in self._backends:
            return self._backends[size].spec
        with self._open_lock:
            if size in self._backends:
                return self._backends[size].spec
            if size in self._failures:  # opening may export for minutes: never retried per frame
                raise ValueError(self._failure(size))
            try:
                if self._export is not None and self._export(height, width):
                    self._log(f"made the graph for {_size(size)} frames in a separate process")
                backend = self._open_backend(height, width)
                spec = backend.spec
                if (spec.camera_height, spec.camera_width) != size:
                    backend.close()
                    raise ValueError(
                        f"the backend opened for {_size(size)} frames runs graph '{spec.key}' for "
                        f"{spec.camera_width}x{spec.camera_height}; export the graph for this camera size"
                    )
            except Exception as error:
                with self._lock:
                    self._failures[size] = f"{type(error).__name__}: {error}"
                    if isinstance(error, ConnectionError):  # a Triton server not up yet: try again later
                        self._retry_at[size] = time.monotonic() + RETRY_S
                raise
            self._backends[size] = backend
        if self._on_open is not None:
            self._on_open(size)
        return spec

    def admit(self, camera: str, size: Size) -> Rejection | None:
        """None when a frame of `size` from `camera` can run now, else why it is skipped.

        A camera without a configured size takes the size of its first frame, whose graph is opened
        now (or, in the background, on a thread of its own while this camera's frames wait). When it
        cannot be opened, the camera learns its size again from its next frame of another size.
        """
        with self._lock:
            if size in self._retry_at and time.monotonic() >= self._retry_at[size]:
                del self._failures[size], self._retry_at[size]  # the server may be up now: open again
                if self._expected.get(camera) == size and size not in self._opening:
                    self._start_opening(camera, size)
            expected = self._expected.get(camera)
            if expected is None:
                if size in self._failures:
                    return self._readiness(size)
                if (refusal := self._over_limit(camera, size)) is not None:
                    return refusal
                self._expected[camera] = expected = size
                if size not in self._backends and size not in self._opening:
                    self._start_opening(camera, size)
            if size != expected:
                return self._other_size(camera, size, expected)
            if self._background or size in self._backends or size in self._failures:
                return self._readiness(size)
        try:  # the first frame of a size waits for its opening
            self.open_graph(*size)
        except Exception:
            with self._lock:
                self._forget_learned(size)
        with self._lock:
            return self._readiness(size)

    def _other_size(self, camera: str, size: Size, expected: Size) -> Rejection:
        if camera in self._configured:
            where = f"{camera}.width x {camera}.height"
            fix = f"start the node with {camera}.width:={size[1]} {camera}.height:={size[0]} (read-only parameters)"
        else:
            where = "its first frame"
            fix = (
                "deactivate, clean up, configure and activate the node (its change_state service, or "
                "`ros2 lifecycle set`), which learns the size again from the next frame"
            )
        return Rejection(
            "size",
            f"size {_size(size)}",
            f"the frame is {_size(size)} but this camera's frames are {_size(expected)} ({where}); frames of other "
            f"sizes are refused, as each size needs a graph of its own. Fix the driver's resolution, or {fix}",
        )

    def _over_limit(self, camera: str, size: Size) -> Rejection | None:
        sizes = set(self._backends) | set(self._opening) | set(self._expected.values())
        if self._max_open is None or size in sizes or len(sizes) < self._max_open:
            return None
        return Rejection(
            "graph limit",
            f"graph limit at {_size(size)}",
            f"the frame is {_size(size)}, a new size, but graphs.max_open ({self._max_open}) sizes are served "
            f"already ({', '.join(map(_size, sorted(sizes)))}); raise graphs.max_open, or set {camera}.width and "
            f"{camera}.height to one of those sizes",
        )

    def _failure(self, size: Size) -> str:
        then = (
            f"tried again every {RETRY_S:.0f} s" if size in self._retry_at else "fix that and configure the node again"
        )
        return f"the graph for {_size(size)} frames could not be opened: {self._failures[size]}; {then}"

    def _readiness(self, size: Size) -> Rejection | None:
        if size in self._failures:
            return Rejection("graph failed", f"graph failed {_size(size)}", self._failure(size))
        if size in self._opening and size not in self._backends:
            started = self._opening[size][1]
            return Rejection(
                WAITING_FOR_GRAPH,
                f"preparing {_size(size)}",
                f"the graph for {_size(size)} frames is being prepared (for {time.monotonic() - started:.0f} s); "
                "this camera's frames are skipped until it is ready, the other cameras keep running",
            )
        return None

    def _start_opening(self, camera: str, size: Size) -> None:
        """Note the opening of `size` and, in the background, start its thread; call with the lock held."""
        if not self._background:
            return
        self._log(
            f"camera '{camera}': preparing the graph for its {_size(size)} frames on a separate thread (set "
            f"{camera}.width and {camera}.height to prepare it at configure); the other cameras keep running"
        )
        thread = threading.Thread(target=self._open_in_background, args=(size,), name=f"dinov2_graph_{_size(size)}")
        thread.daemon = True
        self._opening[size] = (thread, time.monotonic())
        thread.start()

    def _open_in_background(self, size: Size) -> None:
        start = time.monotonic()
        try:
            spec = self.open_graph(*size)
        except Exception as error:  # reported per frame of that size (Rejection "graph failed")
            with self._lock:
                del self._opening[size]
                self._forget_learned(size)
            if not (self._closing or isinstance(error, ExportCancelled)):  # stopped: nothing went wrong
                self._warn(f"the graph for {_size(size)} frames could not be opened: {type(error).__name__}: {error}")
            return
        with self._lock:
            del self._opening[size]
        self._log(f"graph '{spec.key}' for {_size(size)} frames ready in {time.monotonic() - start:.1f} s")

    def _forget_learned(self, size: Size) -> None:
        """A camera that learned `size` learns again from its next frame (one odd first frame does not
        decide its size for good); call with the lock held."""
        for camera in [c for c, s in self._expected.items() if s == size and c not in self._configured]:
            del self._expected[camera]

    def wait(self) -> None:
        """Wait for the graphs being opened in the background."""
        with self._lock:
            threads = [thread for thread, _ in self._opening.values() if thread is not None]
        for thread in threads:
            thread.join()

    def close(self) -> None:
        """Wait for the openings (stop their exports first to have them end at once), then close every
        backend (their memory, GPU memory included)."""
        self._closing = True
        self.wait()
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()

"""What /diagnostics says: per-camera counters and rates, and the model's status.

The numbers users ask for when a perception node misbehaves: is the camera arriving (input rate), is
output keeping up (output rate, frames dropped), how stale is output (latency from the image stamp),
how long inference takes, which frames were rejected and why, and which frames gave no 3D objects.
"""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from dinov2_ros.runtime.model_settings import ModelSettings

# no image for this long turns the camera's status to WARN
STALE_INPUT_S = 2.0
# what the WARN says when the image topic has a publisher but no image arrives
SILENT_PUBLISHER_CAUSE = (
    "likely cause: a best-effort frame larger than the sender's Fast DDS shared-memory segment is dropped "
    "without a log (config/fastdds_large_images.xml allows 16 MiB; 12 MP rgb8 is 34 MiB). Fix: raise "
    "segment_size and maxMessageSize in the camera driver's profile above the frame size (README, \"Large "
    'images over Fast DDS"), or send image/compressed (transport: compressed); else check the log for '
    "incompatible QoS"
)
# the largest message config/fastdds_large_images.xml lets Fast DDS send in one piece (its segment_size
# and maxMessageSize): a best-effort frame above it is lost without a log on either side
TRANSPORT_LIMIT_BYTES = 16 * 1024 * 1024


class _Window:
    """Events in the last `window_s` seconds with an optional value each (for rates and percentiles)."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._events: deque[tuple[float, float]] = deque()

    def add(self, now_s: float, value: float = 0.0) -> None:
        self._events.append((now_s, value))
        self._trim(now_s)

    def _trim(self, now_s: float) -> None:
        while self._events and now_s - self._events[0][0] > self._window_s:
            self._events.popleft()

    def rate(self, now_s: float) -> float:
        self._trim(now_s)
        return len(self._events) / self._window_s

    def values(self, now_s: float) -> np.ndarray:
        self._trim(now_s)
        return np.array([value for _, value in self._events], dtype=np.float64)


class CameraStatistics:
    """Thread-safe statistics for one camera; times are seconds from the caller's clock."""

    def __init__(self, camera: str, window_s: float = 5.0) -> None:
        self.camera = camera
        self._window_s = window_s
        self._lock = threading.Lock()
        self._inputs = _Window(window_s)
        self._ages = _Window(window_s)
        self._outputs = _Window(window_s)
        self._latencies = _Window(window_s)
        self._inference = _Window(window_s)
        self._in_node = _Window(window_s)
        self._last_input_s: float | None = None
        self._subscribed_s: float | None = None
        self.received = 0
        self.published = 0
        self.waited_for_graph = 0  # frames skipped while their size's graph was being opened
        self.rejected: Counter[str] = Counter()
        self.last_rejection = ""
        self._last_rejection_s = 0.0  # when it was (monotonic s): one from an hour ago is history
        self._last_skip_was_graph = False  # the newest skipped frame waited for its graph (not rejected)
        # the newest frame's CameraInfo had K all zeros: 2D objects only (the node sets it per frame)
        self.uncalibrated = False
        self.oriented = 0  # 3D objects published with an oriented box
        self.axis_aligned = 0  # ... with the axis-aligned box, because the points give no orientation
        self.last_axis_aligned_reason = ""
        self.depth_fit = None  # the newest frame's DepthFit (depth_completion.py), why there is none (str), or None
        self.lifted_from_filled = 0  # 3D objects whose depth was mostly filled from the model's (no sensor return)
        self.pick_order: tuple[int, int, str] | None = None  # newest frame's (candidates, held back, a reason)
        # an image arrived since the image topic last had no publisher: the current sender delivers
        self._delivered_since_no_publisher = False
        self.newest_track_id = 0  # ids count up per camera: far more ids than parts seen is a tracker losing them
        # images whose stamp was left out of the latency statistics (in the future, or behind the newest)
        self.stamps_unusable = 0
        self.last_stamp_problem = ""
        self._last_stamp_problem_s: float | None = None
        self.without_3d: Counter[str] = Counter()  # frames published without 3D objects, by problem
        self.last_without_3d = ""  # the newest frame's reason, "" when it had 3D objects
        self._last_image: tuple[int, int, int] | None = None  # (width, height, bytes) of the newest image
        self._last_info: tuple[float, int, int] | None = None  # (time, width, height) of the newest CameraInfo
        self._qos_problem: tuple[float, str, str] | None = None  # (time, topic, policy) of an incompatible publisher

    def image_received(self, now_s: float, age_s: float | None, size: tuple[int, int, int] | None = None) -> None:
        """`age_s`: the image's stamp to its arrival here (camera driver and DDS delivery); None for
        an image without a usable stamp, which counts towards the input rate but not the age
        statistics. `size`: (width, height, bytes) of the image message."""
        with self._lock:
            if size is not None:
                self._last_image = size
            self.received += 1
            self._inputs.add(now_s)
            self._delivered_since_no_publisher = True
            if age_s is not None:
                self._ages.add(now_s, age_s)
            self._last_input_s = now_s

    def stamp_unusable(self, now_s: float, problem: str) -> None:
        """An image whose stamp cannot give a latency (`problem` says why): left out of the statistics."""
        with self._lock:
            self.stamps_unusable += 1
            self.last_stamp_problem = problem
            self._last_stamp_problem_s = now_s

    def qos_incompatible(self, now_s: float, topic: str, policy: str) -> None:
        """A publisher of `topic` offers QoS this camera's subscription cannot match (`policy`)."""
        with self._lock:
            self._qos_problem = (now_s, topic, policy)

    def camera_info_received(self, now_s: float, width: int, height: int) -> None:
        """A CameraInfo describing images of `width` x `height` pixels (binning and ROI applied) arrived."""
        with self._lock:
            self._last_info = (now_s, width, height)

    def frame_without_3d(self, problem: str, detail: str) -> None:
        """A frame was published without 3D objects (FrameResult.without_3d); "" when it had them."""
        with self._lock:
            if problem:
                self.without_3d[problem] += 1
            self.last_without_3d = detail

    def subscribed(self, now_s: float) -> None:
        """The camera's topics were subscribed (node activated): its silence counts from now."""
        with self._lock:
            self._subscribed_s = now_s
            self._last_input_s = None

    def frame_waited_for_graph(self) -> None:
        with self._lock:
            self.waited_for_graph += 1
            self._last_skip_was_graph = True

    def frame_rejected(self, now_s: float, category: str, detail: str) -> None:
        with self._lock:
            self.rejected[category] += 1
            self.last_rejection = f"{category}: {detail}"
            self._last_rejection_s = now_s
            self._last_skip_was_graph = False

    def result_published(self, now_s: float, latency_s: float | None, inference_s: float, in_node_s: float) -> None:
        """`latency_s`: image stamp to objects published, None for an image without a stamp (left out
        of the latency statistics); `in_node_s`: image receipt to objects published, less the graph
        call (what the node adds)."""
        with self._lock:
            self.published += 1
            self._outputs.add(now_s)
            if latency_s is not None:
                self._latencies.add(now_s, latency_s)
            self._inference.add(now_s, inference_s)
            self._in_node.add(now_s, in_node_s)

    def objects_published(self, detections, depth_fit=None) -> None:
        """Count the frame's oriented and axis-aligned 3D boxes (Detection.axis_aligned_reason says why)
        and those lifted mostly from filled depth; keep the frame's `depth_fit` (FrameResult.depth_fit)."""
        posed = [d for d in detections if d.centre is not None]
        reasons = [d.axis_aligned_reason for d in posed if d.axis_aligned_reason]
        newest_id = max((d.track_id for d in detections), default=0)
        with self._lock:
            self.depth_fit = depth_fit
            self.lifted_from_filled += sum(1 for d in posed if d.lifted_from_filled_depth)
            self.newest_track_id = max(self.newest_track_id, newest_id)
            self.oriented += len(posed) - len(reasons)
            self.axis_aligned += len(reasons)
            if reasons:
                self.last_axis_aligned_reason = reasons[-1]

    def pick_order_decided(self, candidates: int, held_back_reasons: list[str]) -> None:
        """The newest frame's pick order (dinov2/pick_candidates): how many candidates, and why parts were held back."""
        with self._lock:
            self.pick_order = (candidates, len(held_back_reasons), held_back_reasons[-1] if held_back_reasons else "")

    def to_status(
        self, now_s: float, node_name: str, dropped: int, image_topic: tuple[str, int] = ("", 0)
    ) -> DiagnosticStatus:
        """The camera's status; `dropped` counts the images replaced before they were processed (its slot's;
        the frames skipped while their graph was being opened are added to it);
        `image_topic`: the image topic's name and how many publishers it has (count_publishers)."""
        with self._lock:
            latencies = self._latencies.values(now_s)
            inference = self._inference.values(now_s)
            values = {
                "input rate (Hz)": f"{self._inputs.rate(now_s):.2f}",
                "output rate (Hz)": f"{self._outputs.rate(now_s):.2f}",
                "latency median (ms)": _milliseconds(latencies, 50),
                "latency max (ms)": _milliseconds(latencies, 100),
                "image age at receipt median (ms)": _milliseconds(self._ages.values(now_s), 50),
                "inference median (ms)": _milliseconds(inference, 50),
                "in node besides inference median (ms)": _milliseconds(self._in_node.values(now_s), 50),
                "frames received": str(self.received),
                "frames published": str(self.published),
                # received = dropped + published + rejected (+ one in flight)
                "frames dropped": str(dropped + self.waited_for_graph),
                "frames dropped while preparing a graph": str(self.waited_for_graph),
                "frames rejected": str(sum(self.rejected.values())),
                "oriented boxes": str(self.oriented),
                "axis-aligned boxes (no orientation)": str(self.axis_aligned),
            }
            if self.last_axis_aligned_reason:
                values["last axis-aligned reason"] = self.last_axis_aligned_reason
            if self.newest_track_id:
                values["track ids issued"] = str(self.newest_track_id)
            values.update(_depth_fit_values(self.depth_fit, self.lifted_from_filled))
            if self.pick_order is not None:
                candidates, held, reason = self.pick_order
                values["pick candidates (newest frame)"] = str(candidates)
                values["held back from picking (newest frame)"] = str(held)
                if reason:
                    values["last held-back reason"] = reason
            values.update(
                {f"frames without 3D objects: {problem}": str(n) for problem, n in sorted(self.without_3d.items())}
            )
            if self.stamps_unusable:
                values["stamps left out of latency"] = str(self.stamps_unusable)
                values["last stamp problem"] = self.last_stamp_problem
            values.update({f"rejected: {reason}": str(n) for reason, n in sorted(self.rejected.items())})
            if self.last_rejection:
                values["last rejection"] = self.last_rejection
                values["last rejection age (s)"] = f"{now_s - self._last_rejection_s:.1f}"
            topic, publishers = image_topic
            if topic:
                values["image topic"] = topic
                values["image publishers"] = str(publishers)
            level, message = self._level(now_s, topic, publishers)
        return DiagnosticStatus(
            level=level,
            name=f"{node_name}: camera {self.camera}",
            message=message,
            hardware_id=self.camera,
            values=[KeyValue(key=key, value=value) for key, value in values.items()],
        )

    def _level(self, now_s: float, topic: str, publishers: int) -> tuple[bytes, str]:
        since_s = self._last_input_s if self._last_input_s is not None else self._subscribed_s
        silent_s = now_s - since_s if since_s is not None else 0.0
        if topic and not publishers:
            self._delivered_since_no_publisher = False  # a sender that starts now is judged afresh
        if silent_s > STALE_INPUT_S and topic:
            qos = self._qos_problem
            if qos is not None and (self._last_input_s is None or qos[0] >= self._last_input_s):
                return DiagnosticStatus.WARN, (
                    f"no image for {silent_s:.1f} s: the publisher of {qos[1]} offers QoS incompatible with this "
                    f"node's subscription (policy {qos[2]}), so nothing arrives; set "
                    f"qos_overrides.{qos[1]}.subscription.{qos[2].lower()} to match it, or change the publisher"
                )
            if publishers and (too_large := self._too_large_for_transport(now_s)):
                return (
                    DiagnosticStatus.WARN,
                    f"no image for {silent_s:.1f} s although {topic} has {publishers} publisher(s): {too_large}",
                )
            if publishers and self._delivered_since_no_publisher:  # it delivered before: not a transport limit
                return DiagnosticStatus.WARN, (
                    f"no image for {silent_s:.1f} s, after {self.received} received, although {topic} has "
                    f"{publishers} publisher(s): the camera stopped sending (paused, or a driver fault: see its "
                    'log); were its frames made larger, see README "Large images over Fast DDS"'
                )
            if publishers:
                return DiagnosticStatus.WARN, (
                    f"no image for {silent_s:.1f} s although {topic} has {publishers} publisher(s); "
                    + SILENT_PUBLISHER_CAUSE
                )
            if self.received:
                return DiagnosticStatus.WARN, (
                    f"no image for {silent_s:.1f} s, after {self.received} received: {topic} has no publisher "
                    "any more; the camera driver stopped or crashed (see its log): restart it"
                )
            return DiagnosticStatus.WARN, (
                f"no image for {silent_s:.1f} s: no publisher on {topic}; start the camera driver, or remap "
                "image (and camera_info) to its topics"
            )
        if self._last_input_s is None:
            return DiagnosticStatus.WARN, "no image received yet"
        if silent_s > STALE_INPUT_S:
            return DiagnosticStatus.WARN, f"no image for {silent_s:.1f} s"
        if self._outputs.rate(now_s) == 0.0:
            if self._last_skip_was_graph:
                return DiagnosticStatus.WARN, (
                    "images arrive but no output yet: the graph for their size is being prepared (see "
                    "'frames dropped while preparing a graph')"
                )
            return DiagnosticStatus.WARN, "images arrive but no output: see 'last rejection'"
        if self.uncalibrated:
            return DiagnosticStatus.WARN, "camera uncalibrated (CameraInfo K all zeros): 2D objects only, no 3D"
        if self.last_without_3d:
            return DiagnosticStatus.WARN, f"no 3D objects in the newest frame: {self.last_without_3d}"
        recent = self._last_stamp_problem_s is not None and now_s - self._last_stamp_problem_s <= self._window_s
        if recent:
            return DiagnosticStatus.WARN, (
                f"image stamps left out of the latency statistics ({self.last_stamp_problem}); the frames are "
                "processed. Stamp images with the capture time on a clock synchronised with this machine's"
            )
        return DiagnosticStatus.OK, "ok"

    def _too_large_for_transport(self, now_s: float) -> str:
        """Why frames likely stopped at the transport, where CameraInfo still arriving tells: its image
        size changed to one whose frames exceed the Fast DDS limit, or never fit it; else ""."""
        if self._last_info is None or now_s - self._last_info[0] > STALE_INPUT_S:
            return ""
        _, width, height = self._last_info
        if self._last_image is not None:
            last_width, last_height, last_bytes = self._last_image
            if (width, height) == (last_width, last_height):
                return ""
            bytes_per_pixel, was = (
                last_bytes / max(last_width * last_height, 1),
                f" (the last image was {last_width}x{last_height})",
            )
        else:
            bytes_per_pixel, was = 3, " (3 bytes a pixel, as rgb8)"
        frame_bytes = width * height * bytes_per_pixel
        if frame_bytes <= TRANSPORT_LIMIT_BYTES:
            return ""
        return (
            f"camera_info still arrives and describes {width}x{height} images{was}: such a frame is "
            f"{frame_bytes / 2**20:.1f} MiB, over the {TRANSPORT_LIMIT_BYTES // 2**20} MiB that "
            "config/fastdds_large_images.xml lets Fast DDS send, so best-effort frames are dropped without a log. "
            "Fix: raise segment_size and maxMessageSize in the camera driver's profile above the frame size, send "
            "image/compressed (transport: compressed), or have the driver send smaller images"
        )


def _depth_fit_values(fit, lifted_from_filled: int) -> dict[str, str]:
    """The newest frame's fit of the model's depth to the sensor's (depth_completion.DepthFit), or why
    there is none (a str)."""
    if fit is None:
        return {}
    if isinstance(fit, str):
        return {"depth fit": fit}

    def number(value: float, scale: float = 1.0, digits: int = 4) -> str:
        return f"{value * scale:.{digits}f}" if np.isfinite(value) else "n/a"

    return {
        "depth fit": "holes filled" if fit.trusted else f"holes left empty: {fit.reason}",
        "depth fit inliers (%)": number(fit.inlier_fraction, 100, 1),
        "depth fit residual median (mm)": number(fit.residual_m, 1000, 1),
        "depth fit scale": number(fit.scale),
        "depth fit shift (m)": number(fit.shift_m),
        "3D objects lifted mostly from filled depth": str(lifted_from_filled),
    }


def _milliseconds(values: np.ndarray, percentile: float) -> str:
    return f"{np.percentile(values, percentile) * 1e3:.1f}" if values.size else "n/a"


def model_status(
    node_name: str, state: str, settings: ModelSettings, graphs: list[str], configure_error
) -> DiagnosticStatus:
    """The model's status in every lifecycle state: its message names the state unless active, a
    failed configure is an ERROR, and random weights a WARN."""
    if state != "active":
        level, message = DiagnosticStatus.OK, f"{state}: no inference (a lifecycle manager activates it)"
        if configure_error is not None:
            level, message = DiagnosticStatus.ERROR, f"configure failed: {configure_error}"
    elif settings.uses_random_weights:
        level, message = DiagnosticStatus.WARN, "RANDOM WEIGHTS (demo/tests only)"
    else:
        level, message = DiagnosticStatus.OK, "ok"
    return DiagnosticStatus(
        level=level,
        name=f"{node_name}: model",
        message=message,
        hardware_id=settings.backend,
        values=[
            KeyValue(key="lifecycle state", value=state),
            KeyValue(key="model", value=settings.describe()),
            KeyValue(key="graphs", value=", ".join(graphs)),
        ],
    )

"""Newest-frame slot per camera, and when the worker starts a batch on the slots.

Subscription callbacks only store messages here; the worker thread takes the newest complete frame.
An image replaced before the worker took it is counted as dropped, so latency stays bounded when the
camera is faster than inference. Each image waits for its partners (camera_info, depth) at most the
pairing timeout from its own arrival; only while no image has found its partners does the wait of a
newer image count from the first of them, so a camera_info that never arrives is given up and
reported as a reason rather than as silence, even when images replace each other faster than the timeout.

`batch_start_delay` decides when to start: by default only on an image that arrived (or got its
camera_info) while the worker was idle, so a published object is one graph call old rather than up
to a camera period older.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from dinov2_ros.perception.rejection import Rejection

# camera_info / depth messages kept per camera while waiting for their image
PARTNER_HISTORY = 8
# images since the last one that found its partners whose partners may still arrive late
UNPAIRED_HISTORY = 2 * PARTNER_HISTORY


@dataclass(frozen=True)
class PairedFrame:
    """One camera's image with the camera_info (and depth) of the same stamp, still as messages."""

    camera: str
    stamp_ns: int
    image: Any
    camera_info: Any
    depth: Any | None
    received_ns: int = 0  # when the image arrived (the slot's clock)
    stamp_usable: bool = True  # False: the stamp gives no latency (zero, in the future, gone backwards)


class _Partners:
    """Last few messages of one partner stream keyed by stamp, matched within a tolerance."""

    def __init__(self) -> None:
        self._by_stamp: OrderedDict[int, Any] = OrderedDict()

    def put(self, stamp_ns: int, msg: Any) -> None:
        self._by_stamp[stamp_ns] = msg
        self._by_stamp.move_to_end(stamp_ns)
        while len(self._by_stamp) > PARTNER_HISTORY:
            self._by_stamp.popitem(last=False)

    def match(self, stamp_ns: int, tolerance_ns: int) -> Any | None:
        exact = self._by_stamp.get(stamp_ns)
        if exact is not None or tolerance_ns == 0:
            return exact
        nearest = min(self._by_stamp, key=lambda s: abs(s - stamp_ns), default=None)
        if nearest is None or abs(nearest - stamp_ns) > tolerance_ns:
            return None
        return self._by_stamp[nearest]

    def newest_stamp(self) -> int | None:
        return next(reversed(self._by_stamp), None)


class CameraSlot:
    """Thread-safe newest-frame slot for one camera."""

    def __init__(self, camera: str, needs_depth: bool, tolerance_ns: int, timeout_ns: int) -> None:
        self.camera = camera
        self.needs_depth = needs_depth
        self.tolerance_ns = tolerance_ns  # the node changes both at run time (parameters)
        self.timeout_ns = timeout_ns
        self._lock = threading.Lock()
        self._image: tuple[int, Any, bool] | None = None  # (stamp, msg, stamp usable)
        self.image_received_ns: int | None = None  # when the image in the slot arrived
        self.ready_ns: int | None = None  # when the image in the slot had all its partners (None: not yet)
        self.last_image_received_ns: int | None = None  # when any image last arrived (camera alive?)
        # (stamp, arrival) of the images since the last one that found its partners, oldest first;
        # the wait of the image in the slot counts from the first of them (its own arrival, unless the
        # images before it never found partners either: then a missing stream is reported, not only dropped)
        self._unpaired: deque[tuple[int, int]] = deque(maxlen=UNPAIRED_HISTORY)
        self._waiting_since_ns: int | None = None
        self._camera_info = _Partners()
        self._depth = _Partners()
        self.dropped = 0

    def put_image(self, stamp_ns: int, msg: Any, received_ns: int, stamp_usable: bool = True) -> None:
        with self._lock:
            if self._image is not None:
                self.dropped += 1
            if self._waiting_since_ns is None:
                self._waiting_since_ns = received_ns
            self._unpaired.append((stamp_ns, received_ns))
            self._image = (stamp_ns, msg, stamp_usable)
            self.image_received_ns = self.last_image_received_ns = received_ns
            self.ready_ns = None
            self._forget_paired(received_ns)

    def put_camera_info(self, stamp_ns: int, msg: Any, received_ns: int | None = None) -> None:
        with self._lock:
            self._camera_info.put(stamp_ns, msg)
            self._forget_paired(time.monotonic_ns() if received_ns is None else received_ns)

    def put_depth(self, stamp_ns: int, msg: Any, received_ns: int | None = None) -> None:
        with self._lock:
            self._depth.put(stamp_ns, msg)
            self._forget_paired(time.monotonic_ns() if received_ns is None else received_ns)

    def _forget_paired(self, now_ns: int) -> None:
        """Drop the images up to the newest one whose partners are here (taken or replaced, they were
        paired): the waits of the images after it start at their own arrival; note when the image in
        the slot became complete. Call with the lock held."""
        if self._image is not None and self.ready_ns is None and self._partners(self._image[0])[2]:
            self.ready_ns = now_ns
        for index in range(len(self._unpaired) - 1, -1, -1):
            if self._partners(self._unpaired[index][0])[2]:
                for _ in range(index + 1):
                    self._unpaired.popleft()
                self._waiting_since_ns = self._unpaired[0][1] if self._unpaired else None
                return

    def clear(self) -> None:
        """Forget the waiting image and its partners (the node stops receiving); counts are kept."""
        with self._lock:
            self._clear()
            self._camera_info = _Partners()
            self._depth = _Partners()
            self.last_image_received_ns = None

    def _clear(self) -> None:
        self._image = self._waiting_since_ns = self.image_received_ns = self.ready_ns = None
        self._unpaired.clear()

    def _partners(self, stamp_ns: int) -> tuple[Any | None, Any | None, bool]:
        """(camera_info, depth, complete) for the image of `stamp_ns`; call with the lock held."""
        info = self._camera_info.match(stamp_ns, self.tolerance_ns)
        depth = self._depth.match(stamp_ns, self.tolerance_ns) if self.needs_depth else None
        return info, depth, info is not None and (depth is not None or not self.needs_depth)

    def complete_since(self, since_ns: int) -> bool:
        """Whether the slot holds an image with all its partners that became complete at or after
        `since_ns` (it, or its last partner, arrived then)."""
        with self._lock:
            return self.ready_ns is not None and self.ready_ns >= since_ns

    def take(self, now_ns: int) -> PairedFrame | Rejection | None:
        """The newest complete frame, else a pairing Rejection when the waiting image was given up (its
        problem "no camera_info" or "no depth image"), else None."""
        with self._lock:
            if self._image is None:
                return None
            stamp_ns, image, stamp_usable = self._image
            info, depth, complete = self._partners(stamp_ns)
            if complete:
                received_ns = self.image_received_ns
                self._clear()
                return PairedFrame(self.camera, stamp_ns, image, info, depth, received_ns, stamp_usable)
            waited_ns = now_ns - self._waiting_since_ns
            if waited_ns < self.timeout_ns:
                return None
            self._clear()
            missing = "camera_info" if info is None else "depth image"
            newest = (self._camera_info if info is None else self._depth).newest_stamp()
            seen = "none received" if newest is None else f"newest stamp {newest / 1e9:.3f} s"
            return Rejection(
                "pairing",
                f"no {missing}",
                f"no {missing} with the image stamp {stamp_ns / 1e9:.3f} s within "
                f"{self.timeout_ns / 1e9:.2f} s (waited {waited_ns / 1e9:.2f} s; {seen}); check that the "
                f"{missing} topic is published with the same stamps, or raise pairing.tolerance_s",
            )


@dataclass(frozen=True)
class BatchPolicy:
    """When the worker starts a batch (the node's scheduling.* parameters)."""

    # True: start only on an image that arrived while the worker was idle (or in the last batch_wait of
    # the batch before); images that arrived earlier in that batch wait to be replaced (lowest latency).
    # False: start at once on the newest image (highest output rate, objects up to a camera period older).
    wait_for_new_frame: bool = True
    # after the first new image, how long to wait for every live camera's new image with its
    # camera_info (and depth): drivers publish the image first, and synchronised rigs arrive within a
    # few ms of each other. At most a quarter of graph_call_ns, so unsynchronised cameras do not add a
    # fast GPU graph's time to each other's latency.
    batch_wait_ns: int = 5_000_000
    # a camera with no image for this long is not waited for
    live_ns: int = 1_000_000_000
    # the recent graph call (None before the first): the wait for other cameras is at most a quarter of it
    graph_call_ns: int | None = None


def batch_start_delay(slots: list[CameraSlot], idle_since_ns: int, now_ns: int, policy: BatchPolicy) -> int | None:
    """None: nothing to start on; 0: take every slot's newest frame now; n > 0: check again in n ns.

    A batch takes every camera's newest image, new or not, so a camera whose images always land while
    the worker is busy is still processed with the next batch rather than starved.
    """
    waiting = [slot.image_received_ns for slot in slots if slot.image_received_ns is not None]
    if not policy.wait_for_new_frame:
        return 0 if waiting else None
    # new: an image that arrived while idle, or one that became complete then (its camera_info came
    # later), or in the last batch_wait of the batch before (the batch would have waited that long)
    fresh_since_ns = idle_since_ns - policy.batch_wait_ns
    ready = [slot.ready_ns for slot in slots if slot.ready_ns is not None and slot.ready_ns >= fresh_since_ns]
    new = [received for received in waiting if received >= fresh_since_ns] + ready
    if not new:
        return None
    incomplete = any(
        slot.last_image_received_ns is not None
        and now_ns - slot.last_image_received_ns < policy.live_ns
        and not slot.complete_since(idle_since_ns)
        for slot in slots
    )
    wait_ns = (
        policy.batch_wait_ns if policy.graph_call_ns is None else min(policy.batch_wait_ns, policy.graph_call_ns // 4)
    )
    return max(min(new) + wait_ns - now_ns, 0) if incomplete else 0

"""The node's two worker threads: one takes each batch of paired messages from the cameras'
newest-frame slots and runs its graph call, the other finishes the batch before (decode, track,
lift, publish). No inference runs in a subscription callback (image_pipeline's rule), latency stays
bounded when cameras outrun inference, and with a GPU backend, whose call waits on the device with the
GIL released, frame N is finished while frame N+1 is inferred: the output rate is set by the slower of
the two stages, not by their sum.

At most one inferred batch waits for the finishing thread: the inferring thread takes the next batch
only once the finishing thread has taken the previous one, so a frame is never inferred long before it
can be published (newest-frame semantics), and batches are finished in the order they were taken. A
batch whose cameras differ in size is handed over one graph call at a time, so a camera's objects do
not wait for another camera's graph call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dinov2_ros.perception.rejection import Rejection
from dinov2_ros.ros.frame_slots import BatchPolicy, CameraSlot, PairedFrame, batch_start_delay

LOG = logging.getLogger(__name__)
# how often an idle worker looks at the slots without a wake-up (pairing timeouts are reported then)
IDLE_POLL_S = 0.1
# how long the finishing thread lets the inferring one take the GIL to start the next graph call: else
# Python's 5 ms switch interval would let the finishing work run first, and nothing would overlap
START_HANDOVER_S = 0.002
_STOP = object()


class FrameWorker:
    """`infer(batch)` on one thread for every batch of paired frames the slots give (one per camera at
    most, started as `policy()` says): it yields what each of its graph calls gave, and
    `finish(that)` runs on another thread, in order; `reject(camera, rejection)` gets the images given
    up for a missing partner. `wake()` from the subscription callbacks; `stop()` after the batches
    under way."""

    def __init__(
        self,
        slots: Sequence[CameraSlot],
        infer: Callable[[list[PairedFrame]], Iterable[Any]],
        finish: Callable[[Any], None],
        reject: Callable[[str, Rejection], None],
        policy: Callable[[], BatchPolicy],
    ) -> None:
        self._slots, self._infer, self._finish = list(slots), infer, finish
        self._reject, self._policy = reject, policy
        self._wake, self._stop = threading.Event(), threading.Event()
        self._handoff: queue.Queue = queue.Queue()
        self._handoff_free = threading.Event()  # the finishing thread has taken the last batch inferred
        self._handoff_free.set()
        self._looked = threading.Event()  # the inferring thread has looked for a batch since the handoff
        self._inferring = threading.Thread(target=self._infer_loop, name="dinov2_infer", daemon=True)
        self._finishing = threading.Thread(target=self._finish_loop, name="dinov2_finish", daemon=True)
        self._finishing.start()
        self._inferring.start()

    def wake(self) -> None:
        self._wake.set()
        # yield the GIL so the worker starts now, not when this executor thread next blocks in its
        # wait (measured here: 0.5 ms -> 0.1 ms from image callback to worker)
        time.sleep(0)

    def stop(self, timeout_s: float = 30.0) -> None:
        """End both threads after the batches under way (from any thread but the workers')."""
        self._stop.set()
        self._wake.set()
        if threading.current_thread() in (self._inferring, self._finishing):
            return
        self._inferring.join(timeout=timeout_s)
        self._handoff.put(_STOP)
        self._finishing.join(timeout=timeout_s)

    def _infer_loop(self) -> None:
        idle_since_ns, timeout_s = 0, IDLE_POLL_S
        while not self._stop.is_set():
            self._wake.wait(timeout=timeout_s)
            self._wake.clear()
            timeout_s = IDLE_POLL_S
            if not self._handoff_free.is_set():
                continue  # the finishing thread wakes this one when it takes the batch
            delay_ns = batch_start_delay(self._slots, idle_since_ns, time.monotonic_ns(), self._policy())
            batch = self._take() if delay_ns == 0 else []
            self._looked.set()  # the finishing thread may go on: this one starts its call or has none
            if batch:
                self._run(batch)
                idle_since_ns = time.monotonic_ns()
            elif delay_ns:
                timeout_s = delay_ns / 1e9

    def _run(self, batch: list[PairedFrame]) -> None:
        """Each of the batch's graph calls, handed over as it ends (after the previous one was taken)."""
        calls = iter(self._infer(batch))
        while True:
            try:
                inferred = next(calls, _STOP)
            except Exception:  # a bug must cost this batch, never the node's output from now on
                LOG.exception("inference of a batch failed")
                return
            if inferred is _STOP:
                return
            self._handoff_free.wait()
            self._handoff_free.clear()
            self._handoff.put(inferred)

    def _finish_loop(self) -> None:
        while (inferred := self._handoff.get()) is not _STOP:
            self._looked.clear()
            self._handoff_free.set()
            self._wake.set()  # the next batch may start its graph call now
            self._looked.wait(timeout=START_HANDOVER_S)
            try:
                self._finish(inferred)
            except Exception:
                LOG.exception("finishing a batch failed")

    def _take(self) -> list[PairedFrame]:
        batch = []
        for slot in self._slots:
            taken = slot.take(time.monotonic_ns())
            if isinstance(taken, Rejection):
                self._reject(slot.camera, taken)
            elif taken is not None:
                batch.append(taken)
        return batch

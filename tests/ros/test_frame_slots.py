"""Newest-frame slots: pairing by stamp, drop counting, and a reason when a partner never arrives."""

from __future__ import annotations

import pytest

from dinov2_ros.perception.rejection import Rejection
from dinov2_ros.ros.frame_slots import (
    PARTNER_HISTORY,
    BatchPolicy,
    CameraSlot,
    PairedFrame,
    batch_start_delay,
)

MS = 1_000_000


def slot(needs_depth: bool = False, tolerance_ns: int = 0, timeout_ns: int = 100 * MS) -> CameraSlot:
    return CameraSlot("front", needs_depth, tolerance_ns, timeout_ns)


def test_an_image_pairs_with_the_camera_info_of_its_stamp_whatever_the_arrival_order():
    s = slot()
    s.put_camera_info(1, "info1")
    s.put_image(2, "image2", received_ns=0)
    assert s.take(now_ns=0) is None  # its camera_info has not arrived yet
    s.put_camera_info(2, "info2")
    frame = s.take(now_ns=1)
    assert isinstance(frame, PairedFrame)
    assert (frame.camera, frame.stamp_ns, frame.image, frame.camera_info, frame.depth) == (
        "front",
        2,
        "image2",
        "info2",
        None,
    )
    assert s.take(now_ns=2) is None  # taken once


def test_only_the_newest_image_is_kept_and_the_replaced_ones_are_counted():
    s = slot()
    for stamp in range(1, 6):
        s.put_camera_info(stamp, f"info{stamp}")
        s.put_image(stamp, f"image{stamp}", received_ns=stamp)
    frame = s.take(now_ns=6)
    assert frame.image == "image5" and s.dropped == 4


def test_depth_is_required_when_asked_for():
    s = slot(needs_depth=True)
    s.put_image(1, "image", 0)
    s.put_camera_info(1, "info")
    assert s.take(now_ns=0) is None
    s.put_depth(1, "depth")
    assert s.take(now_ns=0).depth == "depth"


def test_tolerance_pairs_the_nearest_stamp_within_it():
    s = slot(tolerance_ns=5 * MS)
    s.put_camera_info(100 * MS, "far")
    s.put_camera_info(203 * MS, "near")
    s.put_image(200 * MS, "image", 0)
    assert s.take(now_ns=0).camera_info == "near"
    s.put_image(300 * MS, "image", 0)
    assert s.take(now_ns=0) is None  # 97 ms away: outside the tolerance


def test_a_camera_info_that_never_arrives_is_reported_even_when_images_keep_replacing_each_other():
    s = slot(timeout_ns=100 * MS)
    reasons = []
    for step in range(30):  # a 100 Hz camera for 300 ms, no camera_info at all
        s.put_image(step * 10 * MS, "image", received_ns=step * 10 * MS)
        taken = s.take(now_ns=step * 10 * MS)
        if isinstance(taken, Rejection):
            reasons.append(str(taken))
    assert len(reasons) == 2
    assert "no camera_info with the image stamp" in reasons[0] and "none received" in reasons[0]


def _late_camera_info_stream(timeout_ns: int, stall: range) -> tuple[int, list[str], int]:
    """40 images at 10 Hz, each one's camera_info (same stamp) 20 ms after it; the worker takes 8 ms
    after each image and 1 ms after each camera_info, except during `stall` (frame indices) where it
    is busy. Returns (frames taken, reasons given, images dropped)."""
    s = slot(timeout_ns=timeout_ns)
    events = []  # (time, kind, stamp)
    for index in range(40):
        arrival = 1000 * MS + index * 100 * MS
        stamp = 5 * SECOND + index * 100 * MS
        events += [(arrival, "image", stamp), (arrival + 20 * MS, "info", stamp)]
        events += [(arrival + 8 * MS, "take", index), (arrival + 21 * MS, "take", index)]
    taken, reasons = 0, []
    for now, kind, value in sorted(events):
        if kind == "image":
            s.put_image(value, "image", received_ns=now)
        elif kind == "info":
            s.put_camera_info(value, "info")
        elif value not in stall:
            result = s.take(now_ns=now)
            taken += isinstance(result, PairedFrame)
            reasons += [str(result)] if isinstance(result, Rejection) else []
    return taken, reasons, s.dropped


SECOND = 1000 * MS


@pytest.mark.parametrize("timeout_ms", [150, 1000])
def test_each_image_waits_the_pairing_timeout_from_its_own_arrival_even_after_a_stall(timeout_ms):
    """The 8 ms take finds the image without its camera_info; a 2 s worker stall (frames 5..24) must
    not count against the first image after it."""
    taken, reasons, dropped = _late_camera_info_stream(timeout_ms * MS, stall=range(5, 25))
    assert reasons == []  # no good frame lost to pairing
    assert (taken, dropped) == (20, 20)  # every frame outside the stall; those inside were replaced


def test_an_image_whose_camera_info_arrives_after_it_was_replaced_still_ends_the_wait():
    s = slot(timeout_ns=150 * MS)
    s.put_image(1, "image1", received_ns=0)
    s.put_image(2, "image2", received_ns=140 * MS)  # replaced before its camera_info arrived
    s.put_camera_info(1, "info1")  # late, but it came: the stream is paired
    assert s.take(now_ns=160 * MS) is None  # image2 has waited 20 ms, not 160
    s.put_camera_info(2, "info2")
    assert s.take(now_ns=170 * MS).image == "image2"


def test_partner_history_is_bounded():
    s = slot()
    for stamp in range(PARTNER_HISTORY + 5):
        s.put_camera_info(stamp, stamp)
    s.put_image(0, "image", 0)
    assert s.take(now_ns=0) is None  # stamp 0 fell out of the history


@pytest.mark.parametrize("missing", ["camera_info", "depth image"])
def test_the_reason_names_the_missing_partner_and_the_newest_stamp_seen(missing):
    s = slot(needs_depth=True, timeout_ns=10 * MS)
    if missing == "depth image":
        s.put_camera_info(5 * 1_000_000_000, "info")
    s.put_depth(3 * 1_000_000_000, "old depth")
    s.put_image(5 * 1_000_000_000, "image", received_ns=0)
    reason = s.take(now_ns=20 * MS)
    assert isinstance(reason, Rejection) and reason.problem == f"no {missing}" and reason.category == "pairing"
    reason = str(reason)
    assert reason.startswith(f"no {missing} with the image stamp 5.000 s")
    assert "newest stamp 3.000 s" in reason if missing == "depth image" else "none received" in reason


def _slot_with_image(received_ns: int | None, last_ns: int | None = None, with_info: bool = True) -> CameraSlot:
    """A slot whose camera last sent an image at `last_ns` (taken), now holding one from `received_ns`."""
    s = slot()
    if last_ns is not None:
        s.put_image(0, "old image", received_ns=last_ns)
        s.put_camera_info(0, "info", received_ns=last_ns)
        s.take(now_ns=last_ns)
    if received_ns is not None:
        s.put_image(1, "image", received_ns=received_ns)
        if with_info:
            s.put_camera_info(1, "info", received_ns=received_ns)
    return s


def test_by_default_a_batch_starts_only_on_an_image_that_arrived_while_the_worker_was_idle():
    policy = BatchPolicy()
    idle_since = 100 * MS
    stale = _slot_with_image(received_ns=90 * MS)  # arrived during the previous batch
    assert batch_start_delay([stale], idle_since, 101 * MS, policy) is None
    stale.put_image(2, "newer image", received_ns=120 * MS)
    stale.put_camera_info(2, "its info", received_ns=120 * MS)
    assert batch_start_delay([stale], idle_since, 121 * MS, policy) == 0
    assert stale.dropped == 1  # the stale image was replaced, and counted
    assert batch_start_delay([_slot_with_image(None)], idle_since, 101 * MS, policy) is None


def test_an_image_from_the_last_moments_of_the_batch_before_counts_as_new():
    """It is no older than the batch would have waited for it (batch_wait_s): starting on it beats
    dropping it for the camera's next frame (a short batch of another camera's frame must not starve it)."""
    idle_since = 100 * MS
    assert batch_start_delay([_slot_with_image(received_ns=96 * MS)], idle_since, 101 * MS, BatchPolicy()) == 0
    assert batch_start_delay([_slot_with_image(received_ns=94 * MS)], idle_since, 101 * MS, BatchPolicy()) is None


def test_starting_at_once_on_the_newest_image_when_asked_for():
    policy = BatchPolicy(wait_for_new_frame=False)
    assert batch_start_delay([_slot_with_image(received_ns=90 * MS)], 100 * MS, 101 * MS, policy) == 0
    assert batch_start_delay([_slot_with_image(None)], 100 * MS, 101 * MS, policy) is None


def test_a_batch_waits_briefly_for_the_other_live_cameras_then_takes_their_older_images():
    policy = BatchPolicy(batch_wait_ns=5 * MS, live_ns=1000 * MS)
    idle_since = 100 * MS
    front = _slot_with_image(received_ns=110 * MS)
    rear = _slot_with_image(received_ns=90 * MS, last_ns=60 * MS)  # alive; its image is from the last batch
    assert batch_start_delay([front, rear], idle_since, 111 * MS, policy) == 4 * MS
    assert batch_start_delay([front, rear], idle_since, 116 * MS, policy) == 0  # waited long enough
    rear.put_image(3, "rear new", received_ns=112 * MS)
    assert batch_start_delay([front, rear], idle_since, 112 * MS, policy) == 3 * MS  # its camera_info is due
    rear.put_camera_info(3, "rear info", received_ns=112 * MS)
    assert batch_start_delay([front, rear], idle_since, 112 * MS, policy) == 0  # every camera is complete


def test_an_image_published_before_its_camera_info_waits_for_it_rather_than_going_stale():
    """Drivers (image_transport's CameraPublisher) publish the image first: a batch that started on
    the image alone would leave it waiting through an inference, and with two such cameras one starves."""
    policy = BatchPolicy(batch_wait_ns=5 * MS)
    idle_since = 100 * MS
    front = _slot_with_image(received_ns=110 * MS, last_ns=50 * MS, with_info=False)
    assert batch_start_delay([front], idle_since, 110 * MS, policy) == 5 * MS
    front.put_camera_info(1, "info", received_ns=111 * MS)
    assert batch_start_delay([front], idle_since, 111 * MS, policy) == 0


def test_an_image_whose_camera_info_came_after_the_batch_ended_is_new():
    """It arrived during the previous batch but could not go in (no camera_info yet): once complete it
    starts a batch, instead of waiting to ride along with another camera's (it would starve)."""
    idle_since = 100 * MS
    late = _slot_with_image(received_ns=80 * MS, last_ns=50 * MS, with_info=False)
    assert batch_start_delay([late], idle_since, 101 * MS, BatchPolicy()) is None
    late.put_camera_info(1, "info", received_ns=102 * MS)
    assert batch_start_delay([late], idle_since, 102 * MS, BatchPolicy()) == 0


def test_the_wait_for_other_cameras_is_at_most_a_quarter_of_the_graph_call():
    front, rear = _slot_with_image(received_ns=110 * MS), _slot_with_image(received_ns=None, last_ns=90 * MS)
    slow, fast = BatchPolicy(graph_call_ns=100 * MS), BatchPolicy(graph_call_ns=8 * MS)
    assert batch_start_delay([front, rear], 100 * MS, 110 * MS, slow) == 5 * MS  # batch_wait_s
    assert batch_start_delay([front, rear], 100 * MS, 110 * MS, fast) == 2 * MS


def test_a_camera_that_stopped_publishing_is_not_waited_for():
    policy = BatchPolicy(batch_wait_ns=5 * MS, live_ns=1000 * MS)
    front = _slot_with_image(received_ns=5000 * MS)
    silent = _slot_with_image(None, last_ns=1000 * MS)  # nothing for 4 s
    never = slot()
    assert batch_start_delay([front, silent, never], 4990 * MS, 5001 * MS, policy) == 0


def test_clearing_forgets_the_waiting_image_and_its_partners_but_keeps_the_counts():
    """What deactivation does: no frame from before it is processed after the next activation."""
    s = slot()
    s.put_image(1, "image1", received_ns=0)
    s.put_image(2, "image2", received_ns=1)
    s.put_camera_info(3, "info3")
    s.clear()
    assert s.take(now_ns=10**12) is None and s.image_received_ns is None and s.last_image_received_ns is None
    s.put_image(3, "image3", received_ns=2)
    assert s.take(now_ns=3) is None, "the camera_info from before the clear is gone"
    assert s.dropped == 1

"""The warning throttle: one message per key and interval, keys independent."""

from __future__ import annotations

from dinov2_ros.ros.warning_throttle import WarningThrottle


def test_each_key_gets_its_first_message_and_then_one_per_interval():
    throttle = WarningThrottle(5.0)
    assert throttle.allow(("front", "image: truncated"), now_s=0.0)
    assert not throttle.allow(("front", "image: truncated"), now_s=4.9)
    assert throttle.allow(("front", "image: step"), now_s=0.5), "another problem of the same camera"
    assert throttle.allow(("rear", "image: truncated"), now_s=1.0), "the same problem of another camera"
    assert throttle.allow(("front", "image: truncated"), now_s=5.0)


def test_the_interval_changes_at_run_time():
    throttle = WarningThrottle(5.0)
    assert throttle.allow("key", now_s=0.0)
    throttle.interval_s = 0.0
    assert throttle.allow("key", now_s=0.0)

"""Timing helpers of `dinov2-ros bench` and benchmarks/: statistics and the interleaved loop."""

from __future__ import annotations

import pytest

from dinov2_ros.tools.latency import Latency, time_interleaved


def test_latency_statistics_in_milliseconds():
    latency = Latency.of([0.001 * value for value in range(1, 101)])
    assert latency.median_ms == pytest.approx(50.5)
    assert latency.p99_ms == pytest.approx(99.01)
    assert latency.min_ms == pytest.approx(1.0)
    assert latency.samples == 100
    assert str(latency) == "median    50.50 ms  p99    99.01 ms  min     1.00 ms"
    with pytest.raises(ValueError, match="no timing samples"):
        Latency.of([])


def test_stages_run_interleaved_after_warmup():
    calls = []
    result = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert set(result) == {"a", "b"} and all(latency.samples == 3 for latency in result.values())
    with pytest.raises(ValueError, match="need iterations >= 1"):
        time_interleaved({"a": lambda: None}, 0)

"""At most one log message per key and interval: the node's warnings per (camera, problem)."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable


class WarningThrottle:
    """Thread-safe: `allow(key)` is True for a key's first message and then once per `interval_s`
    seconds (monotonic clock); the node changes `interval_s` at run time (warnings.throttle_s)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last_s: dict[Hashable, float] = {}

    def allow(self, key: Hashable, now_s: float | None = None) -> bool:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            last_s = self._last_s.get(key)
            if last_s is not None and now_s - last_s < self.interval_s:
                return False
            self._last_s[key] = now_s
            return True


class CameraWarnings:
    """The node's log about its cameras: at most one line per (camera, problem) and `throttle` interval."""

    def __init__(self, logger, throttle: WarningThrottle) -> None:
        self._logger, self.throttle = logger, throttle

    def __call__(self, camera: str, problem: str, text: str, level: str = "warning") -> None:
        """Log "camera '<camera>': <text>" unless (camera, problem) was logged within the interval; `level`
        "error", "warning", or "info" for what is expected and counted (frames waiting for their graph)."""
        if not self.throttle.allow((camera, problem)):
            return
        # one call per severity: rclpy refuses a call site whose severity changes between calls
        message = f"camera '{camera}': {text}"
        if level == "error":
            self._logger.error(message)
        elif level == "info":
            self._logger.info(message)
        else:
            self._logger.warning(message)

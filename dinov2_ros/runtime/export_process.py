"""Making a camera size's graph (or engine) in a process of its own, so the node's cameras keep running.

An export traces the model's core with torch for 18-26 s (vits14 here; once per model and input
size, later camera sizes compose the stored core with their ends in about 3 s) and holds the
interpreter's lock for much of it; a TensorRT build takes minutes. In the node's process either would
slow every camera's inference and leave its memory (0.7-2 GB) with the node, and the robot process
never imports the build code. `dinov2-ros export` (`build-engine` for TensorRT) in a child process at
low CPU priority writes where the node looks (the same settings, the same artifact store), and then
exits, freeing its memory.

The child stops with the node: it runs in a session of its own, so a terminal's Ctrl-C reaches the
node alone, which then ends the child (SIGTERM: the child removes what it had half written and
exits); and it asks the kernel for SIGTERM when the node dies without that (`--stop-with-parent`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable

from dinov2_ros.runtime.backend_opener import BackendOpener

# the child's CPU priority (nice): the cameras' inference comes first
EXPORT_NICENESS = 10
# `dinov2-ros export`'s exit status for settings or a store it cannot make a graph from (its last line says why)
EXIT_REFUSED = 2
# how long a stopped child may take to clean up before it is killed
STOP_TIMEOUT_S = 10.0


class ExportCancelled(RuntimeError):
    """The export was stopped because the node is shutting down or cleaning up."""


class ChildExporter:
    """`exporter(height, width)` makes what the store lacks for that size in a child process;
    `cancel()` ends every running child (the node's cleanup and shutdown) and refuses new ones.

    `progress` gets the exporter's log lines as they come ("export 2/6: ...", "quantising ...", each
    prefixed with the camera size), so a half-minute cold start shows in the node's log; `warn` its
    warnings (a damaged core deleted and made again). Left out: the store's skip lines and the
    graph's path, which the node logs itself when it opens the graph.
    """

    def __init__(
        self,
        opener: BackendOpener,
        progress: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._opener, self._progress, self._warn = opener, progress, warn
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen] = set()
        self._cancelled = False

    def __call__(self, height: int, width: int) -> bool:
        """True when it made a file, False when nothing was missing. ValueError with the exporter's
        one-line reason when it refuses (e.g. no torch here and no stored core); ExportCancelled when
        `cancel` stopped it; RuntimeError with its last log lines when it fails otherwise."""
        if not self._opener.missing(height, width):
            return False
        command = self._opener.build_command(height, width, ("--log-levels", "--stop-with-parent"))
        with self._lock:
            if self._cancelled:
                raise ExportCancelled(f"the node is stopping: no graph for {width}x{height} frames is made")
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
            self._children.add(process)
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or the child has already exited
            os.setpriority(os.PRIO_PROCESS, process.pid, EXPORT_NICENESS)
        last_lines: deque[str] = deque(maxlen=4)
        given_up = threading.Event()
        reader = threading.Thread(
            target=self._forward, args=(process, height, width, last_lines, given_up), daemon=True
        )
        reader.start()
        try:
            while process.poll() is None:  # waits in short sleeps: Ctrl-C reaches this thread at once
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.2)
            reader.join()
        except BaseException:  # the caller gave up (Ctrl-C, a failing log call): so does the child, and
            given_up.set()  # its last lines are not logged (after Ctrl-C, rclpy's /rosout is already gone)
            _stop(process)
            raise
        finally:
            with self._lock:
                self._children.discard(process)
        if self._cancelled:
            raise ExportCancelled(f"the node is stopping: the graph for {width}x{height} frames was not made")
        if process.returncode == EXIT_REFUSED and last_lines:  # the exporter said why, and what to do, in one line
            raise ValueError(f"the graph for {width}x{height} frames could not be made: {last_lines[-1]}")
        if process.returncode != 0:
            raise RuntimeError(
                f"making the graph for {width}x{height} frames failed (`dinov2-ros` exit {process.returncode}): "
                f"{' | '.join(last_lines)}; run `{self._opener.build_command_line(height, width)}` to see the "
                "whole error"
            )
        return True

    def cancel(self) -> None:
        """End every running child (it removes what it had half written) and refuse new ones."""
        with self._lock:
            self._cancelled = True
            children = list(self._children)
        for process in children:
            _stop(process)

    def _forward(
        self, process: subprocess.Popen, height: int, width: int, last_lines: deque[str], given_up: threading.Event
    ) -> None:
        """Pass the child's log lines on by level, until it closes its output or is given up."""
        for line in process.stdout:
            level, _, message = line.strip().partition(": ")
            if level not in _LEVELS:  # printed, not logged: the paths written, a library's own output
                level, message = "", line.strip()
            if not message or self._cancelled or given_up.is_set():
                continue
            last_lines.append(message)
            if message.startswith(_LOGGED_BY_THE_NODE):
                continue
            text = f"graph for {width}x{height} frames: {message}"
            # one call site per severity: an rclpy logger refuses a call site that changes severity
            with contextlib.suppress(Exception):  # a log line must never stop the forwarding
                if level in ("WARNING", "ERROR", "CRITICAL") and self._warn is not None:
                    self._warn(text)
                elif level == "INFO" and self._progress is not None:
                    self._progress(text)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the child has not exited within STOP_TIMEOUT_S."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# the child's lines the node's own BackendOpener logs when it opens the graph
_LOGGED_BY_THE_NODE = ("artifact store: skipping", "graph for ", "int8 graph for ")

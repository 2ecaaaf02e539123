"""Making a camera size's graph (or engine) in a process of its own, so the node's cameras keep running.

An export traces the model's core with torch for 18-26 s (vits14 here; once per model and input
size, later camera sizes compose the stored core with their ends in about 3 s) and holds the
interpreter's lock for much of it; a TensorRT build takes minutes. In the node's process either would
slow every camera's inference and leave its memory (0.7-2 GB) with the node, and the robot process
never imports the build code. `dinov2-ros export` (`build-engine` for TensorRT) in a child process at
low CPU priority writes where the node looks (the same settings, the same artifact store), and then
exits, freeing its memory.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections import deque
from collections.abc import Callable

from dinov2_ros.runtime.backend_opener import BackendOpener

# the child's CPU priority (nice): the cameras' inference comes first
EXPORT_NICENESS = 10
# `dinov2-ros export`'s exit status for settings or a store it cannot make a graph from (its last line says why)
EXIT_REFUSED = 2


def export_in_subprocess(
    opener: BackendOpener,
    height: int,
    width: int,
    progress: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> bool:
    """Make what the store lacks for `height` x `width` frames in a child process (opener.build_command).

    True when it exported, False when nothing was missing. `progress` gets the exporter's log lines
    as they come ("export 2/6: ...", "quantising ...", each prefixed with the camera size), so a
    half-minute cold start shows in the node's log; `warn` its warnings (a damaged core deleted and
    made again). Left out: the store's skip lines and the graph's path, which the node logs itself
    when it opens the graph. ValueError with the exporter's one-line reason when it refuses (e.g. no
    torch here and no stored core: export on a workstation and copy model.graph_dir); RuntimeError
    with its last log lines when it fails otherwise.
    """
    if not opener.missing(height, width):
        return False
    process = subprocess.Popen(
        opener.build_command(height, width), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or the child has already exited
        os.setpriority(os.PRIO_PROCESS, process.pid, EXPORT_NICENESS)
    last_lines: deque[str] = deque(maxlen=4)
    try:
        for line in process.stdout:
            level, _, message = line.strip().partition(": ")
            if level not in _LEVELS:  # printed, not logged: the paths written, a library's own output
                level, message = "", line.strip()
            if not message:
                continue
            last_lines.append(message)
            if message.startswith(_LOGGED_BY_THE_NODE):
                continue
            text = f"graph for {width}x{height} frames: {message}"
            # one call site per severity: an rclpy logger refuses a call site that changes severity
            if level in ("WARNING", "ERROR", "CRITICAL") and warn is not None:
                warn(text)
            elif level == "INFO" and progress is not None:
                progress(text)
    except BaseException:  # the caller gave up (a failing log call, Ctrl-C): so does the child
        process.kill()
        process.wait()
        raise
    process.wait()
    if process.returncode == EXIT_REFUSED and last_lines:  # the exporter said why, and what to do, in one line
        raise ValueError(f"the graph for {width}x{height} frames could not be made: {last_lines[-1]}")
    if process.returncode != 0:
        raise RuntimeError(
            f"making the graph for {width}x{height} frames failed (`dinov2-ros` exit {process.returncode}): "
            f"{' | '.join(last_lines)}; run `{opener.build_command_line(height, width)}` to see the whole error"
        )
    return True


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# the child's lines the node's own BackendOpener logs when it opens the graph
_LOGGED_BY_THE_NODE = ("artifact store: skipping", "graph for ", "int8 graph for ")

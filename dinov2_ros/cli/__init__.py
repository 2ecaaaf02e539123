"""The `dinov2-ros` command: one entry point, one module per subcommand group.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its subcommands and sets
`func` (called with the parsed namespace, returning an exit code). Modules import torch and the
inference runtimes inside their handlers, so `dinov2-ros weights list` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import logging
import os
import signal
import sys

# subcommand -> module that registers it
COMMAND_MODULES = {
    "weights": "dinov2_ros.cli.weights",
    "export": "dinov2_ros.cli.export",
    "build-engine": "dinov2_ros.cli.engine",
    "bench": "dinov2_ros.cli.bench",
    "teach": "dinov2_ros.cli.teach",
    "train-detector": "dinov2_ros.cli.detector",
    "eval-detector": "dinov2_ros.cli.detector",
    "demo": "dinov2_ros.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinov2-ros", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-levels",
        action="store_true",
        help="start each log line with its level (INFO: ...), for a process that forwards them (the node)",
    )
    parser.add_argument(
        "--stop-with-parent",
        action="store_true",
        help="exit cleanly on SIGTERM and when the parent process dies (the node's child exporter)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    message_format = "%(levelname)s: %(message)s" if args.log_levels else "%(message)s"
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=message_format)
    if args.stop_with_parent:
        _stop_with_parent()
    return int(args.func(args) or 0)


def _stop_with_parent() -> None:
    """SIGTERM (from the node, or from the kernel when the node dies: Linux's PR_SET_PDEATHSIG) unwinds
    the command like an error, so every file it was writing is removed (atomic_write), and exits 143."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the node's SIGTERM still stops it
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the request was in place
        sys.exit(128 + signal.SIGTERM)

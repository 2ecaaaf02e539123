"""The `dinov2-ros` command: one entry point, one module per subcommand group.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its subcommands and sets
`func` (called with the parsed namespace, returning an exit code). Modules import torch and the
inference runtimes inside their handlers, so `dinov2-ros weights list` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging

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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    message_format = "%(levelname)s: %(message)s" if args.log_levels else "%(message)s"
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=message_format)
    return int(args.func(args) or 0)

"""`dinov2-ros demo`: the demo system (synthetic camera -> perception node) with a console report."""

from __future__ import annotations

import argparse

from dinov2_ros.runtime.model_settings import BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the demo without a camera, GPU or downloads: synthetic camera -> perception node, with a report",
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds to run after the first output (0: until Ctrl-C)"
    )
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for the first output")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    parser.add_argument("--model", default="vits14", help="encoder variant")
    parser.add_argument("--rate", type=float, default=15.0, help="synthetic camera frame rate (Hz)")
    parser.add_argument(
        "--scene",
        default="picking",
        choices=("picking", "conveyor", "stacked"),
        help="picking: still parts, a new scene every 8 s; conveyor: parts moving across a tilted table, "
        "objects placed with ray-cast depth, the report says whether each part kept its track id; stacked: "
        "parts lying on others, for the completed depth and the pick order (dinov2/pick_candidates)",
    )
    parser.add_argument(
        "--graph-dir", default="", help="artifact store for the exported graphs (default: the config's model.graph_dir)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dinov2_ros.tools.demo.demo_runner import DemoSettings, run_demo

    return run_demo(
        DemoSettings(
            duration_s=args.duration,
            startup_timeout_s=args.startup_timeout,
            backend=args.backend,
            variant=args.model,
            rate_hz=args.rate,
            scene=args.scene,
            graph_dir=args.graph_dir,
        )
    )

"""`dinov2-ros build-engine`: build (or find in the cache) the TensorRT engine for an exported graph.

Run it once on the target machine (Jetson, desktop GPU) so the node starts without a minutes-long build.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

_LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from dinov2_ros.runtime.tensorrt_backend import DEFAULT_CACHE_DIR
    from dinov2_ros.runtime.tensorrt_build import PRECISIONS

    parser = subparsers.add_parser("build-engine", help="build and cache the TensorRT engine of an exported graph")
    parser.add_argument("onnx", type=Path, help="graph written by `dinov2-ros export` (the fp32 file)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16", help="fp16 keeps LayerNorm in fp32")
    parser.add_argument("--max-batch", type=int, default=4, help="most frames per call (cameras)")
    parser.add_argument("--workspace-gb", type=float, default=2.0, help="builder workspace limit")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="engine cache directory")
    parser.set_defaults(func=_build_engine)


def _build_engine(args: argparse.Namespace) -> int:
    from dinov2_ros.runtime.cuda_runtime import CudaUnavailableError
    from dinov2_ros.runtime.tensorrt_backend import TensorRTBackend

    try:
        backend = TensorRTBackend(
            args.onnx,
            precision=args.precision,
            max_batch=args.max_batch,
            workspace_bytes=int(args.workspace_gb * (1 << 30)),
            cache_dir=args.cache_dir,
        )
    except (ImportError, ValueError, FileNotFoundError, CudaUnavailableError) as error:
        _LOG.error("%s", error)
        return 2
    with backend:
        print(f"engine ready for {backend.spec.key} ({args.precision}, max batch {args.max_batch}) in {args.cache_dir}")
    return 0

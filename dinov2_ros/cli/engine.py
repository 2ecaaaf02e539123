"""`dinov2-ros build-engine`: build (or find in the artifact store) the TensorRT engines the node will run.

Run it once on the target machine (Jetson, desktop GPU) with the node's parameter file, so the node
starts without a minutes-long build: the engine lands in `<model.graph_dir>/engines`, where the node
looks. The graph is taken from the store, or exported first (which needs torch).
"""

from __future__ import annotations

import argparse
import logging

from dinov2_ros.cli.export import add_camera_option
from dinov2_ros.cli.model_options import add_model_options, settings_from_args
from dinov2_ros.weights.cache import WeightsError

_LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-engine", help="build the node's TensorRT engines into its artifact store", description=__doc__
    )
    add_model_options(parser)
    add_camera_option(parser)
    parser.set_defaults(func=_build_engine)


def _build_engine(args: argparse.Namespace) -> int:
    from dinov2_ros.cli.calibration import calibration_images
    from dinov2_ros.export.graph_builder import GraphBuilder
    from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import CudaUnavailableError

    try:
        # the node's file may name another backend for this machine: the engine is TensorRT's either way
        settings = settings_from_args(args).replace(backend="tensorrt")
        builder = GraphBuilder(settings, lambda: calibration_images(settings.calibration))
        for height, width in args.camera or [(480, 640)]:
            with builder.open(height, width) as backend:  # built, then loaded as the node loads it
                print(
                    f"engine ready for {backend.spec.key} ({settings.backend_precision}, max batch "
                    f"{settings.max_batch}) in {builder.store.engine_dir}"
                )
    except (ImportError, ValueError, FileNotFoundError, CudaUnavailableError, WeightsError) as error:
        _LOG.error("%s", error)
        return 2
    return 0

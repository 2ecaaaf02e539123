"""`dinov2-ros export`: write the graphs the node will run, for the given camera sizes, into its artifact store.

Run it with the node's parameter file (`--params-file config/perception.yaml`) on a machine with
torch; copy `model.graph_dir` to the robot, and the node there runs the graphs without torch.
"""

from __future__ import annotations

import argparse
import logging

from dinov2_ros.cli.model_options import add_model_options, parse_size, settings_from_args
from dinov2_ros.weights.cache import WeightsError

_LOG = logging.getLogger(__name__)


def add_camera_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--camera",
        type=parse_size,
        action="append",
        help="camera WIDTHxHEIGHT as the node receives it (repeat for several; default 640x480)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export the node's graph for camera sizes into its artifact store (model.graph_dir)",
        description=__doc__,
    )
    add_model_options(parser)
    add_camera_option(parser)
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument(
        "--triton-repository",
        metavar="DIR",
        help="also write each graph as a model of this Triton model repository (docs/triton.md)",
    )
    parser.add_argument(
        "--triton-platform",
        choices=("onnxruntime", "python"),
        default="onnxruntime",
        help="onnxruntime: Triton's ONNX Runtime backend on the GPU (the NGC container); python: ONNX Runtime "
        "on the server's CPU through the Python backend (a server without the ONNX Runtime backend)",
    )
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from dinov2_ros.cli.calibration import calibration_images
    from dinov2_ros.export.graph_builder import GraphBuilder
    from dinov2_ros.export.triton_repository import write_triton_model
    from dinov2_ros.runtime.text_encoder import TEXT_DIR

    try:
        settings = settings_from_args(args)
        builder = GraphBuilder(settings, lambda: calibration_images(settings.calibration))
        text_dir = builder.store.directory / TEXT_DIR
        for height, width in args.camera or [(480, 640)]:
            # TensorRT engines are built where they run (`build-engine`); export writes their graphs
            for path in builder.make(height, width, opset=args.opset, engine=False):
                print(path)
                if args.triton_repository and path.parent != text_dir:  # dino.txt's text encoder runs in the node
                    model = write_triton_model(args.triton_repository, path, settings.max_batch, args.triton_platform)
                    print(model)
    except (ValueError, FileNotFoundError, ModuleNotFoundError, WeightsError) as error:
        _LOG.error("%s", error)
        return 2
    return 0

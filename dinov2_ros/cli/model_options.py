"""The model and backend options of `export`, `build-engine` and `bench`, from the node's one declaration.

Every entry of runtime/model_settings.MODEL_SETTINGS is an option here (`model.depth_weights` is
`--depth-weights`); `--params-file config/perception.yaml` reads the node's parameter file first, and
options given on the command line win over it, as launch arguments win over the file for the node.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dinov2_ros.runtime.model_settings import MODEL_SETTINGS, ModelSettings, read_parameter_file


def parse_size(text: str) -> tuple[int, int]:
    """ "640x480" (width x height) -> (height, width)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"width and height must be >= 1, got {text!r}")
    return height, width


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--params-file`, `--node-name` and one option per model and backend setting."""
    parser.add_argument(
        "--params-file",
        type=Path,
        action="append",
        default=[],
        help="ROS 2 parameter file the node runs with (e.g. config/perception.yaml); repeat it as for the node "
        "(later files win); options given here win over all",
    )
    parser.add_argument("--node-name", default="dinov2", help="the node's section in --params-file (default: dinov2)")
    group = parser.add_argument_group("model and backend (the node's model.* and backend.* parameters)")
    for name, setting in MODEL_SETTINGS.items():
        group.add_argument(
            setting.flag,
            dest=setting.field,
            type=type(setting.default) if not isinstance(setting.default, str) else str,
            choices=setting.choices or None,
            default=None,
            help=f"{setting.description} [{name}, default {setting.default!r}]",
        )


def settings_from_args(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> ModelSettings:
    """ModelSettings from, in rising priority: MODEL_SETTINGS, `defaults`, each `--params-file`, the options."""
    values = dict(defaults or {})
    for path in args.params_file:
        values.update(
            (name, value)
            for name, value in read_parameter_file(path, args.node_name).items()
            if name.startswith(("model.", "backend.")) or name == "cameras"  # cameras: backend.opt_batch 0
        )
    for name, setting in MODEL_SETTINGS.items():
        given = getattr(args, setting.field)
        if given is not None:
            values[name] = given
    return ModelSettings.from_values(values)

"""A camera's graph = its input end + the stored core + its output end, the ends written in ONNX, no torch.

The core (`PerceptionCore`: encoder and heads on a normalised model input) does not depend on the
camera, so it is exported by torch once per model and input size. What a camera size changes are
the ends: camera uint8 pixels to the model input (`Preprocess`), and depth and boxes back to camera
pixels (`DepthToCamera`, `BoxesToCamera`). These are a dozen ONNX operators, built here from the
GraphSpec's mapping (the one source of the geometry, which the torch modules use too; the tests
hold the two equal) and joined to the core with `onnx.compose.merge_graphs`. So a new camera size
takes seconds instead of an export, and a robot with the stored core and no torch composes it.

Inputs and outputs are those of docs/architecture.md. TensorRT's rules are kept by construction: the
uint8 `images` feeds only a Cast (every Shape is read after it), Resize is linear, half-pixel,
without antialiasing.
"""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, compose, helper, numpy_helper

from dinov2_ros.runtime.graph_spec import CORE_INPUT, GraphSpec

BATCH = "batch"


def compose_graph(spec: GraphSpec, core: ModelProto) -> ModelProto:
    """The whole graph for `spec`'s camera: its input end, `core` (exported from `PerceptionCore` for
    `spec.core()`), its output end; outputs in `spec.output_specs()` order.

    `core`'s weights may stay in its data file (`onnx.load(..., load_external_data=False)`): joining
    copies only the references to them. The graphs are joined with `onnx.compose.merge_graphs`, not
    `merge_models`, whose in-memory check cannot take a model over 2 GiB nor one whose weights are
    elsewhere; the caller checks the written file (camera_graph.compose_camera_graph).
    ValueError when `core` lacks an input or output the ends connect to (not a core of this spec).
    """
    core_inputs = {value.name for value in core.graph.input}
    core_outputs = [value.name for value in core.graph.output]
    wanted = spec.core_output_names()
    if CORE_INPUT not in core_inputs or core_outputs != list(wanted):
        raise ValueError(
            f"the core has inputs {sorted(core_inputs)} and outputs {core_outputs}; a core of graph "
            f"'{spec.key}' reads '{CORE_INPUT}' and gives {list(wanted)}: export the core again"
        )
    graph = compose.merge_graphs(input_end(spec), core.graph, io_map=[(CORE_INPUT, CORE_INPUT)])
    ending = output_end(spec)
    if ending.input:
        graph = compose.merge_graphs(graph, ending, io_map=[(value.name, value.name) for value in ending.input])
    by_name = {value.name: value for value in graph.output}
    ordered = [by_name[output.name] for output in spec.output_specs()]
    del graph.output[:]
    graph.output.extend(ordered)
    model = helper.make_model(graph, opset_imports=list(core.opset_import), ir_version=core.ir_version)
    model.functions.extend(core.functions)
    return model


def input_end(spec: GraphSpec):
    """GraphProto: `images` uint8 (N, H, W, 3) RGB -> `model_input` float (N, 3, h, w), as `Preprocess`.

    Cast, to planes, bilinear resize of the raw 0..255 values to the content size, `x * scale + bias`
    (the ImageNet normalisation as one multiply-add), zero padding around a letterbox's content.
    """
    m = spec.mapping()
    mean, std = (np.array(values, np.float64) for values in spec.normalisation)
    constants = {
        "camera_in/scale": (1.0 / (255.0 * std)).astype(np.float32).reshape(1, 3, 1, 1),
        "camera_in/bias": (-mean / std).astype(np.float32).reshape(1, 3, 1, 1),
    }
    nodes = [
        helper.make_node("Cast", ["images"], ["camera_in/pixels"], "camera_in/cast", to=TensorProto.FLOAT),
        helper.make_node(
            "Transpose", ["camera_in/pixels"], ["camera_in/planes"], "camera_in/planes", perm=[0, 3, 1, 2]
        ),
    ]
    x = "camera_in/planes"
    if (spec.camera_height, spec.camera_width) != (m.content_height, m.content_width):
        x = _resize(nodes, constants, "camera_in", x, (m.content_height, m.content_width))
    nodes += [
        helper.make_node("Mul", [x, "camera_in/scale"], ["camera_in/scaled"], "camera_in/mul"),
        helper.make_node("Add", ["camera_in/scaled", "camera_in/bias"], ["camera_in/normalised"], "camera_in/add"),
    ]
    x = "camera_in/normalised"
    pad_x, pad_y = spec.input_width - m.content_width, spec.input_height - m.content_height
    if pad_x or pad_y:
        constants["camera_in/pads"] = np.array(
            [0, 0, m.offset_y, m.offset_x, 0, 0, pad_y - m.offset_y, pad_x - m.offset_x], np.int64
        )
        nodes.append(helper.make_node("Pad", [x, "camera_in/pads"], ["camera_in/padded"], "camera_in/pad"))
        x = "camera_in/padded"
    nodes[-1].output[0] = CORE_INPUT  # the last step's result is what the core reads
    inputs = [_value("images", TensorProto.UINT8, (BATCH, spec.camera_height, spec.camera_width, 3))]
    outputs = [_value(CORE_INPUT, TensorProto.FLOAT, (BATCH, 3, spec.input_height, spec.input_width))]
    return _graph("camera_in", nodes, inputs, outputs, constants)


def output_end(spec: GraphSpec):
    """GraphProto: the core's depth and detections -> camera pixels, as `DepthToCamera` and `BoxesToCamera`.

    `input_depth` (N, 1, h, w) -> `depth` (N, H, W): the letterbox content cropped, resized bilinearly.
    `input_boxes` (N, K, 4), `scores` and `classes` (N, K) -> `detections` (N, K, 6) rows
    (x1, y1, x2, y2, score, class) with boxes in camera pixels, clipped to the image. Masks and
    features stay on the patch grid, so they pass from the core unchanged (not through this end).
    """
    m = spec.mapping()
    nodes, constants, inputs, outputs = [], {}, [], []
    if spec.depth:
        h, w = spec.input_height, spec.input_width
        inputs.append(_value("input_depth", TensorProto.FLOAT, (BATCH, 1, h, w)))
        x = "input_depth"
        if (m.content_height, m.content_width) != (h, w):
            constants |= {
                "camera_out/crop_starts": np.array([m.offset_y, m.offset_x], np.int64),
                "camera_out/crop_ends": np.array(
                    [m.offset_y + m.content_height, m.offset_x + m.content_width], np.int64
                ),
                "camera_out/crop_axes": np.array([2, 3], np.int64),
            }
            crop = ["camera_out/crop_starts", "camera_out/crop_ends", "camera_out/crop_axes"]
            nodes.append(helper.make_node("Slice", [x, *crop], ["camera_out/content"], "camera_out/crop"))
            x = "camera_out/content"
        if (m.content_height, m.content_width) != (spec.camera_height, spec.camera_width):
            x = _resize(nodes, constants, "camera_out", x, (spec.camera_height, spec.camera_width))
        constants["camera_out/channel_axis"] = np.array([1], np.int64)
        nodes.append(helper.make_node("Squeeze", [x, "camera_out/channel_axis"], ["depth"], "camera_out/depth"))
        outputs.append(_value("depth", TensorProto.FLOAT, (BATCH, spec.camera_height, spec.camera_width)))
    if spec.detection:
        k = spec.top_k
        inputs += [
            _value("input_boxes", TensorProto.FLOAT, (BATCH, k, 4)),
            _value("scores", TensorProto.FLOAT, (BATCH, k)),
            _value("classes", TensorProto.FLOAT, (BATCH, k)),
        ]
        scale = np.array([m.scale_x, m.scale_y] * 2, np.float64)
        offset = np.array([m.offset_x, m.offset_y] * 2, np.float64)
        constants |= {  # camera = input * inv_scale + shift, folded in float64 before rounding to float32
            "camera_out/inv_scale": (1.0 / scale).astype(np.float32),
            "camera_out/shift": (-offset / scale).astype(np.float32),
            "camera_out/zero": np.array(0.0, np.float32),
            "camera_out/upper": np.array([spec.camera_width, spec.camera_height] * 2, np.float32),
            "camera_out/last_axis": np.array([-1], np.int64),
        }
        nodes += [
            helper.make_node("Mul", ["input_boxes", "camera_out/inv_scale"], ["camera_out/scaled"], "camera_out/mul"),
            helper.make_node("Add", ["camera_out/scaled", "camera_out/shift"], ["camera_out/boxes"], "camera_out/add"),
            helper.make_node("Max", ["camera_out/boxes", "camera_out/zero"], ["camera_out/above"], "camera_out/max"),
            helper.make_node("Min", ["camera_out/above", "camera_out/upper"], ["camera_out/inside"], "camera_out/min"),
            helper.make_node("Unsqueeze", ["scores", "camera_out/last_axis"], ["camera_out/score"], "camera_out/score"),
            helper.make_node(
                "Unsqueeze", ["classes", "camera_out/last_axis"], ["camera_out/class"], "camera_out/class"
            ),
            helper.make_node(
                "Concat",
                ["camera_out/inside", "camera_out/score", "camera_out/class"],
                ["detections"],
                "camera_out/detections",
                axis=-1,
            ),
        ]
        outputs.append(_value("detections", TensorProto.FLOAT, (BATCH, k, 6)))
    return _graph("camera_out", nodes, inputs, outputs, constants)


def _resize(nodes: list, constants: dict, scope: str, x: str, size: tuple[int, int]) -> str:
    """Append a bilinear, half-pixel Resize of NCHW `x` to `size` (h, w); returns its output's name.

    The sizes are (N, C) of `x` read at run time (the dynamic batch) and `size`.
    """
    constants[f"{scope}/size"] = np.array(size, np.int64)
    nodes += [
        helper.make_node("Shape", [x], [f"{scope}/batch_channels"], f"{scope}/shape", start=0, end=2),
        helper.make_node(
            "Concat", [f"{scope}/batch_channels", f"{scope}/size"], [f"{scope}/sizes"], f"{scope}/sizes", axis=0
        ),
        helper.make_node(
            "Resize",
            [x, "", "", f"{scope}/sizes"],
            [f"{scope}/resized"],
            f"{scope}/resize",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
            antialias=0,
        ),
    ]
    return f"{scope}/resized"


def _value(name: str, dtype: int, shape: tuple):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _graph(name: str, nodes: list, inputs: list, outputs: list, constants: dict[str, np.ndarray]):
    initializers = [numpy_helper.from_array(array, key) for key, array in constants.items()]
    return helper.make_graph(nodes, name, inputs, outputs, initializers)

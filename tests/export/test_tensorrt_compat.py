"""The exported graphs meet every supported TensorRT version's documented ONNX restrictions.

Graphs with the node's default heads (linear4 depth, exemplar detection with top_k 20, features) on
a tiny random 4-block encoder, with and without register tokens (`_reg4`), go through
`tensorrt_compat.graph_violations` for each TensorRT version in tensorrt_api/versions.txt. So that
the check cannot pass vacuously, deliberately broken copies must be flagged, and TensorRT 8.6 (not
supported: opset 17) must be. The fp16 copy for strongly typed builds runs in ONNX Runtime on the CPU
and is compared with the fp32 graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper
from tensorrt_modules import bindings_versions
from tiny_graphs import CAMERA, TINY_DIM, frames, inputs_for, tiny_vision_head

from dinov2_ros.export.core_export import export_graph
from dinov2_ros.export.engine_build import STRONG_TYPING_FROM, onnx_node_of, plan_build
from dinov2_ros.export.mixed_precision import fp16_graph, fp32_nodes
from dinov2_ros.export.tensorrt_compat import graph_violations, max_opset, max_topk
from dinov2_ros.model import DinoVisionTransformer, LinearDepthHead
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.runtime.backends.tensorrt.loader import parse_version
from dinov2_ros.runtime.graph_spec import GraphSpec

SUPPORTED = [v for v in bindings_versions() if parse_version(v) >= (10, 0)]
BLOCKS = 4
# fp16 (strongly typed) against fp32, both in ONNX Runtime CPU, random tiny weights
FP16_ATOL = {"depth": 0.02, "features": 0.01, "masks": 0.05}


def node_default_graph(registers: int, dinotxt: bool = False) -> tuple[GraphSpec, PerceptionGraph]:
    """The node's default heads (config/perception.yaml) on a tiny random encoder; with `dinotxt`, its
    patch features through dino.txt's vision head (two SwiGLU blocks, as model.dinotxt_weights adds)."""
    spec = GraphSpec(
        variant="tiny_reg4" if registers else "tiny",
        camera_height=CAMERA[0],
        camera_width=CAMERA[1],
        input_height=56,
        input_width=70,  # 4:3 camera at 4x5 patches, as the node's 224x308
        heads=("depth", "exemplar"),
        top_k=20,
        max_prototypes=8,
        embed_dim=TINY_DIM,
        features=True,
        dinotxt=dinotxt,
    )
    torch.manual_seed(1)
    backbone = DinoVisionTransformer(
        embed_dim=TINY_DIM, depth=BLOCKS, num_heads=2, num_register_tokens=registers, img_size=56
    )
    backbone.init_weights()
    with torch.no_grad():
        backbone.pos_embed.normal_(std=0.5)
        backbone.cls_token.normal_(std=0.5)
    depth_head = LinearDepthHead(TINY_DIM, tuple(range(BLOCKS)), 0.001, 10.0)  # linear4: four taps
    detection = ExemplarHead(max_classes=spec.max_classes, top_k=spec.top_k, similarity_threshold=0.2)
    vision_head = tiny_vision_head() if dinotxt else None
    return spec, PerceptionGraph(spec, backbone, depth_head, detection, vision_head).eval()


@pytest.fixture(scope="module", params=[(0, False), (4, False), (4, True)], ids=["vit", "vit_reg4", "vit_reg4_dinotxt"])
def graph(request, tmp_path_factory):
    spec, module = node_default_graph(*request.param)
    path = export_graph(module, tmp_path_factory.mktemp("compat") / f"{spec.key}.onnx")
    return spec, onnx.load(path)


@pytest.mark.parametrize("version", SUPPORTED)
def test_exported_graph_meets_every_supported_version(graph, version):
    spec, model = graph
    assert graph_violations(model, version) == []
    if plan_build(version, "fp16").fp16_graph:
        assert graph_violations(fp16_graph(model, spec), version) == []


def test_tensorrt_8_6_is_flagged_and_refused(graph):
    _, model = graph
    found = graph_violations(model, "8.6.1")
    assert found[0] == "opset 18: TensorRT 8.6.1 parses ONNX opsets up to 17"
    assert sum("`axes` is an input (opset 18)" in line for line in found) >= 10
    with pytest.raises(ValueError, match=r"TensorRT 8\.6\.1 is not supported.*JetPack 6\.1 or 6\.2"):
        plan_build("8.6.1", "fp16")


def broken_copies(model: onnx.ModelProto) -> dict[str, tuple[onnx.ModelProto, str]]:
    """Copies of `model`, each breaking one documented restriction, with the line the checker must print."""
    copies = {}
    shape = onnx.ModelProto()
    shape.CopyFrom(model)
    shape.graph.node.insert(0, helper.make_node("Shape", ["images"], ["raw_shape"], name="raw_shape"))
    copies["uint8 Shape"] = shape, "Shape node 'raw_shape' reads uint8 input 'images'"

    opset = onnx.ModelProto()
    opset.CopyFrom(model)
    next(entry for entry in opset.opset_import if entry.domain == "").version = 26
    copies["opset"] = opset, "opset 26: TensorRT"

    topk = onnx.ModelProto()
    topk.CopyFrom(model)
    node = next(node for node in topk.graph.node if node.op_type == "TopK")
    k = onnx.numpy_helper.from_array(np.array([5000], np.int64), name="huge_k")
    topk.graph.initializer.append(k)
    node.input[1] = "huge_k"
    copies["TopK"] = topk, f"TopK node '{node.name}': K=5000"

    unknown = onnx.ModelProto()
    unknown.CopyFrom(model)
    unknown.graph.node.append(helper.make_node("StringNormalizer", ["x"], ["y"], name="strings"))
    copies["operator"] = unknown, "StringNormalizer node 'strings': operator not supported"

    antialias = onnx.ModelProto()
    antialias.CopyFrom(model)
    resize = next(node for node in antialias.graph.node if node.op_type == "Resize")
    kept = [attribute for attribute in resize.attribute if attribute.name != "antialias"]
    del resize.attribute[:]
    resize.attribute.extend([*kept, helper.make_attribute("antialias", 1)])
    copies["antialias"] = antialias, f"Resize node '{resize.name}': antialiased Resize"
    return copies


@pytest.mark.parametrize("version", SUPPORTED)
def test_broken_graphs_are_flagged(graph, version):
    _, model = graph
    for what, (broken, expected) in broken_copies(model).items():
        found = graph_violations(broken, version)
        assert any(line.startswith(expected) for line in found), (what, found)


def test_limits_per_version():
    assert [max_opset(v) for v in ("8.6.1", "10.3.0", "10.14.1", "10.16.0.72", "11.4.0.106")] == [17, 20, 20, 24, 25]
    assert [max_topk(v) for v in ("8.6.1", "10.3.0", "11.0.0")] == [1024, 3839, 3839]
    assert STRONG_TYPING_FROM == (10, 12)


def test_fp16_graph_keeps_io_types_and_matches_fp32_in_onnxruntime(graph):
    spec, model = graph
    mixed = fp16_graph(model, spec)
    types = lambda values: {v.name: v.type.tensor_type.elem_type for v in values}  # noqa: E731
    assert types(mixed.graph.input) == types(model.graph.input)
    assert types(mixed.graph.output) == types(model.graph.output)
    assert any(weight.data_type == onnx.TensorProto.FLOAT16 for weight in mixed.graph.initializer)
    inputs = inputs_for(spec, frames("structured", spec, batch=2))
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)  # noqa: E731
    names = [output.name for output in model.graph.output]
    reference = dict(zip(names, run(model), strict=True))
    got = dict(zip(names, run(mixed), strict=True))
    for name, atol in FP16_ATOL.items():
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], reference[name], atol=atol, err_msg=name)
    np.testing.assert_array_equal(got["detections"][..., 5], reference["detections"][..., 5])  # class ids


def test_fp16_graph_is_a_valid_onnx_model(graph):
    """Nodes in topological order and value_info that tells the truth: TensorRT's parser sorts nodes and
    ignores value_info, but Polygraphy, ONNX Runtime's optimisers and a user's inspection do not."""
    spec, model = graph
    mixed = fp16_graph(model, spec)
    onnx.checker.check_model(mixed, full_check=True)


def test_both_fp16_routes_keep_the_heads_and_boxes_in_fp32(graph):
    """The set the strongly typed copy keeps fp32 and the weak route pins: the detection head (prototype
    normalisation, cosines, boxes) and what follows it (boxes to camera pixels), the depth bins, every
    LayerNorm and Softmax; not the encoder's matrix products. In the copy, the box arithmetic reads fp32."""
    spec, model = graph
    kept = set(fp32_nodes(model, spec))
    names = {node.name: node for node in model.graph.node}
    boxes = [
        name for name in names if name.startswith("camera_out/") and names[name].op_type in ("Mul", "Add", "Min", "Max")
    ]
    assert boxes and set(boxes) <= kept
    assert {n for n, node in names.items() if node.op_type in ("LayerNormalization", "Softmax")} <= kept
    assert any("detection_head" in str(node.metadata_props) for node in names.values() if node.name in kept)
    encoder_matmuls = [
        n for n, node in names.items() if node.op_type == "MatMul" and "backbone" in str(node.metadata_props)
    ]
    assert encoder_matmuls and not kept & set(encoder_matmuls)
    mixed = onnx.shape_inference.infer_shapes(fp16_graph(model, spec))
    types = {v.name: v.type.tensor_type.elem_type for v in (*mixed.graph.value_info, *mixed.graph.input)}
    mixed_nodes = {node.name: node for node in mixed.graph.node}
    for name in boxes:
        assert {types.get(i) for i in mixed_nodes[name].input if i in types} <= {onnx.TensorProto.FLOAT}, name


def test_tensorrt_layers_are_traced_to_their_onnx_nodes():
    """onnx-tensorrt names a node's layers `<node>`, `<node>_1`, ... (ImporterContext::registerLayer)."""
    nodes = {"node_add_17", "node_add_17_1", "/blocks.0/Mul", "camera_out/max"}
    assert onnx_node_of("node_add_17", nodes) == "node_add_17"
    assert onnx_node_of("node_add_17_1", nodes) == "node_add_17_1", "a node of that name wins over a suffix"
    assert onnx_node_of("node_add_17_1_2", nodes) == "node_add_17_1"
    assert onnx_node_of("/blocks.0/Mul_3", nodes) == "/blocks.0/Mul"
    assert onnx_node_of("camera_out/max", nodes) == "camera_out/max"
    assert onnx_node_of("ONNXTRT_Broadcast_5", nodes) is None


@pytest.fixture(scope="module")
def qdq_graph(graph, tmp_path_factory):
    """The calibrated Q/DQ int8 copy of the node-default graph, calibrated on structured frames."""
    from dinov2_ros.export.quantize import quantize_qdq
    from dinov2_ros.runtime.graph_file import PRECISION_KEY, QDQ_PRECISION, load_graph_metadata

    spec, model = graph
    directory = tmp_path_factory.mktemp("qdq")
    onnx.save(model, directory / "fp32.onnx")
    path = quantize_qdq(directory / "fp32.onnx", directory / "qdq.onnx", list(frames("structured", spec, batch=6)))
    assert load_graph_metadata(path)[1][PRECISION_KEY] == QDQ_PRECISION
    return spec, onnx.load(path)


@pytest.mark.parametrize("version", SUPPORTED)
def test_the_qdq_int8_graph_meets_every_supported_version(qdq_graph, version):
    """Explicit quantisation as TensorRT takes it: int8, zero points 0, per-channel weights, per-tensor
    activations, on every supported version; the heads and LayerNorm/Softmax left unquantised."""
    _, model = qdq_graph
    assert graph_violations(model, version) == []
    nodes = list(model.graph.node)
    assert sum(node.op_type == "QuantizeLinear" for node in nodes) >= BLOCKS * 3, "qkv, proj, fc1 per block"
    quantised_inputs = {output for node in nodes if node.op_type == "DequantizeLinear" for output in node.output}
    for node in nodes:
        if node.op_type in ("LayerNormalization", "Softmax") or "detection_head" in str(node.metadata_props):
            assert not quantised_inputs & set(node.input), node.name


def test_qdq_restrictions_are_flagged(qdq_graph):
    _, model = qdq_graph
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    activation = next(
        node for node in model.graph.node if node.op_type == "QuantizeLinear" and node.input[0] not in constants
    )
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    target = next(node for node in broken.graph.node if node.name == activation.name)
    zero_point = next(tensor for tensor in broken.graph.initializer if tensor.name == target.input[2])
    zero_point.CopyFrom(onnx.numpy_helper.from_array(np.array(3, np.uint8), name=zero_point.name))
    scale = next(tensor for tensor in broken.graph.initializer if tensor.name == target.input[1])
    scale.CopyFrom(onnx.numpy_helper.from_array(np.full(4, 0.1, np.float32), name=scale.name))
    found = graph_violations(broken, "10.3.0")
    where = f"QuantizeLinear node '{activation.name}'"
    assert f"{where}: UINT8 quantisation; TensorRT takes int8 (zero point 0)" in found
    assert f"{where}: per-channel scales on an activation; TensorRT quantises activations per tensor" in found
    del target.input[2:]
    assert f"{where}: no zero point means uint8; TensorRT quantises to int8 with zero point 0" in graph_violations(
        broken, "10.3.0"
    )


def test_the_qdq_graph_runs_in_onnxruntime_close_to_fp32(graph, qdq_graph):
    spec, model = graph
    _, qdq = qdq_graph
    inputs = inputs_for(spec, frames("structured", spec, batch=2))
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)  # noqa: E731
    names = [output.name for output in model.graph.output]
    reference, got = (dict(zip(names, run(m), strict=True)) for m in (model, qdq))
    np.testing.assert_allclose(got["depth"], reference["depth"], atol=0.05)
    cosine = (got["features"] * reference["features"]).sum(1) / (
        np.linalg.norm(got["features"], axis=1) * np.linalg.norm(reference["features"], axis=1)
    )
    assert cosine.mean() > 0.99, cosine.mean()

"""Classes named in words through the node's dinov2/add_class service (dino.txt), on real rclpy.

The graphs are tiny and random (node_harness.export_tiny_dinotxt_graphs): this checks the plumbing,
service to LabelInfo and the prototype file; what a prompt finds needs Meta's weights.
"""

from __future__ import annotations

import pytest
from node_harness import SceneCamera, export_tiny_dinotxt_graphs, start_node
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import ListParameters, SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from service_calls import documented_calls, filled, message_type
from vision_msgs.msg import Detection2DArray, LabelInfo

from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.ros.class_services import add_class_request

pytestmark = pytest.mark.dds
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def dinotxt_graphs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dinotxt_graphs")
    return directory, export_tiny_dinotxt_graphs(directory, [(120, 160), (480, 640)])


def test_a_class_named_in_words_is_taught_through_the_service(context, dinotxt_graphs, harness, tmp_path):
    graph_dir, parameters = dinotxt_graphs
    classes_file = tmp_path / "classes.npz"
    overrides = parameters | {"prototypes.file": str(classes_file)}
    node = start_node(context, graph_dir, "words", **overrides)
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/words/image")
    info_pub = harness.publisher(type(camera.messages(0)[1]), "/words/camera_info")
    objects = harness.record(Detection2DArray, "/words/dinov2/objects_2d")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    labels = harness.record(LabelInfo, "/words/dinov2/label_info", latched)
    add = harness.node.create_client(SetParameters, "/words/dinov2/add_class")
    listing = harness.node.create_client(ListParameters, "/words/dinov2/list_classes")
    call = harness.call

    try:
        result = call(add, add_class_request(None, text="blue connector")).results[0]
        assert result.successful, result.reason  # a text needs no frame: no camera has sent one yet
        assert result.reason == "class 'blue connector' has id 0 (taught from the text 'blue connector')"
        for stamp in range(1, 40):  # the box half of a mixed class needs a processed frame
            image, info, _ = camera.messages(stamp * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: objects, timeout_s=0.05):
                break
        assert objects, "the node published no objects"
        mixed = add_class_request("bolt", box=[20.0, 15.0, 140.0, 105.0], text="hex bolt")
        result = call(add, mixed).results[0]
        assert result.successful, result.reason
        assert "class 'bolt' has id 1 (taught from box [20.0, 15.0, 140.0, 105.0] on camera 'camera' and the text" in (
            result.reason
        )
        assert harness.spin_until(
            lambda: labels and [c.class_name for c in labels[-1].class_map] == ["blue connector", "bolt"]
        )
        assert list(call(listing, ListParameters.Request()).result.names) == ["blue connector", "bolt"]
        saved = PrototypeStore.load(classes_file)
        assert saved.encoder == "tiny:random+dinotxt:random"
        assert saved.prompts_of("bolt") == ["hex bolt"] and len(saved.prototypes_of("bolt")) == 2

        node.set_parameters([Parameter("dinotxt.prompt_templates", value=["a photo of the {}.", "a {} part"])])
        result = call(add, add_class_request("nut", text="m8 nut")).results[0]
        assert result.successful, result.reason
        refused = node.set_parameters([Parameter("dinotxt.prompt_templates", value=["no slot"])])[0]
        assert not refused.successful and "must each hold one '{}'" in refused.reason
        empty = SetParameters.Request(
            parameters=[ParameterMsg(name="text", value=Parameter("text", value=" ").get_parameter_value())]
        )
        refused = call(add, empty).results[0]
        assert not refused.successful and "field text must be a non-empty string" in refused.reason
    finally:
        node.destroy_node()


def test_a_node_without_dinotxt_refuses_a_text_and_says_what_to_set(context, graph_dir, harness):
    node = start_node(context, graph_dir, "plain")
    harness.add_node(node)
    add = harness.node.create_client(SetParameters, "/plain/dinov2/add_class")
    try:
        result = harness.call(add, add_class_request(None, text="blue connector")).results[0]
        assert not result.successful and "needs dino.txt: set model.dinotxt_weights" in result.reason
    finally:
        node.destroy_node()


def test_the_documented_text_calls_work_as_written(context, dinotxt_graphs, harness):
    """docs/text_prompts.md's `ros2 service call` examples, sent as written (640x480 frames, where the
    documented box lies)."""
    graph_dir, parameters = dinotxt_graphs
    node = start_node(context, graph_dir, **parameters)
    harness.add_node(node)
    camera = SceneCamera(640, 480)
    image_pub, info_pub = (
        harness.publisher(Image, "/image"),
        harness.publisher(type(camera.messages(0)[1]), "/camera_info"),
    )
    objects = harness.record(Detection2DArray, "/dinov2/objects_2d")
    try:
        for stamp in range(1, 60):  # a processed frame for the documented box
            image, info, _ = camera.messages(stamp * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: objects, timeout_s=0.1):
                break
        calls = documented_calls("docs/text_prompts.md")
        assert [name for name, _, _ in calls] == ["/dinov2/add_class", "/dinov2/add_class"]
        for name, kind, request in calls:
            service = message_type(kind)
            result = harness.call(harness.node.create_client(service, name), filled(service.Request(), request))
            assert result.results[0].successful, result.results[0].reason
        assert node.pipeline.labels() == {0: "blue connector", 1: "bolt"}
    finally:
        node.destroy_node()


def test_a_text_encoder_that_cannot_be_opened_fails_the_request_not_the_node(context, harness, tmp_path):
    """ONNX Runtime refusing a damaged graph raises its own error type: the service answers with it."""
    from rclpy.node import Node
    from tiny_graphs import write_tiny_vocabulary

    from dinov2_ros.perception.frame_pipeline import FramePipeline
    from dinov2_ros.perception.text_prompts import StoredPromptEncoder
    from dinov2_ros.ros.class_services import ClassServices
    from dinov2_ros.runtime.text_encoder import vocabulary_beside

    damaged = tmp_path / "text-encoder-0.onnx"
    damaged.write_bytes(b"\x08\x07" + bytes(range(256)) * 4)  # half a copy, say
    write_tiny_vocabulary(vocabulary_beside(damaged))
    node = Node("damaged", context=context)
    pipeline = FramePipeline(lambda h, w: None, PrototypeStore("tiny", (56, 56), 32), max_classes=3)
    encoder = StoredPromptEncoder(lambda: damaged)
    ClassServices(node, pipeline, ["camera"], lambda: None, lambda text: encoder.prototype(text))
    harness.add_node(node)
    add = harness.node.create_client(SetParameters, "/damaged/add_class")
    try:
        result = harness.call(add, add_class_request(None, text="blue connector")).results[0]
        assert not result.successful and result.reason.startswith(("InvalidProtobuf", "Fail")), result.reason
        assert pipeline.labels() == {}
        assert harness.call(add, add_class_request(None, text="blue connector"))  # and it still answers
    finally:
        node.destroy_node()

"""The documentation's `ros2 service call` examples (README, then docs/perception_node.md, in reading
order), sent as written to the node's services over DDS.

ros2cli is not installable here, so the test does what `ros2 service call` does with the YAML
request: it fills the request message field by field, then calls the service from another node.
"""

from __future__ import annotations

import importlib
import re

import yaml
from node_harness import REPO, SceneCamera
from node_harness import start_node as start_tiny_node
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

SECOND = 1_000_000_000
CALL = re.compile(r'ros2 service call (\S+) (\S+) "(.*?)"', re.S)


DOCUMENTS = ("README.md", "docs/perception_node.md")


def readme_calls() -> list[tuple[str, str, object]]:
    """(service, type, request YAML) of every `ros2 service call` in the README and the node's page."""
    text = "".join((REPO / document).read_text() for document in DOCUMENTS)
    return [(name, kind, yaml.safe_load(body)) for name, kind, body in CALL.findall(text)]


def message_type(name: str):
    """'rcl_interfaces/srv/SetParameters' or 'rcl_interfaces/Parameter' -> the class."""
    package, *middle, leaf = name.split("/")
    return getattr(importlib.import_module(f"{package}.{middle[0] if middle else 'msg'}"), leaf)


def filled(msg, values: dict):
    """Set a message's fields from YAML values as ros2cli's set_message_fields does."""
    types = msg.get_fields_and_field_types()
    for field, value in values.items():
        kind = types[field]
        if kind.startswith("sequence<") and "/" in kind:
            element = message_type(kind[len("sequence<") : -1])
            setattr(msg, field, [filled(element(), item) for item in value])
        elif "/" in kind:
            filled(getattr(msg, field), value)
        else:
            setattr(msg, field, value)
    return msg


def test_the_readme_has_an_example_for_each_service():
    assert {name for name, _, _ in readme_calls()} == {
        "/dinov2/add_class",
        "/dinov2/remove_class",
        "/dinov2/list_classes",
    }


def test_the_readme_service_calls_work_as_written(context, graph_dir, harness):
    node = start_tiny_node(context, graph_dir, encoder="slow")  # 640x480, where the README's box lies
    harness.add_node(node)
    camera = SceneCamera(640, 480)
    image_pub, info_pub = harness.publisher(Image, "/image"), harness.publisher(CameraInfo, "/camera_info")
    objects = harness.record(Detection2DArray, "/dinov2/objects_2d")
    try:
        for index in range(1, 100):  # a processed frame to teach from
            image, info, _ = camera.messages(index * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: objects, timeout_s=0.3):
                break
        responses = {}
        for name, kind, request in readme_calls():
            service = message_type(kind)
            client = harness.node.create_client(service, name)
            assert client.wait_for_service(timeout_sec=10.0), name
            future = client.call_async(filled(service.Request(), request or {}))
            assert harness.spin_until(future.done, timeout_s=10.0), name
            responses[name] = future.result()
        for name in ("/dinov2/add_class", "/dinov2/remove_class"):
            result = responses[name].results[0]
            assert result.successful, f"{name}: {result.reason}"
        assert list(responses["/dinov2/list_classes"].result.names) == ["bolt"]  # between add and remove
        assert node.pipeline.labels() == {}, "removed"
    finally:
        node.destroy_node()

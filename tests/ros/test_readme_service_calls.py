"""The documentation's `ros2 service call` examples (README, then docs/perception_node.md, in reading
order), sent as written to the node's services over DDS (filled as ros2cli fills them: service_calls.py).
"""

from __future__ import annotations

from node_harness import SceneCamera
from node_harness import start_node as start_tiny_node
from sensor_msgs.msg import CameraInfo, Image
from service_calls import documented_calls, filled, message_type
from vision_msgs.msg import Detection2DArray

SECOND = 1_000_000_000
DOCUMENTS = ("README.md", "docs/perception_node.md")


def readme_calls() -> list[tuple[str, str, object]]:
    return documented_calls(*DOCUMENTS)


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

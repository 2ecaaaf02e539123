"""perception_node as a managed node: driven through its lifecycle services by another rclpy node, as
nav2_lifecycle_manager does, over real DDS; output only while active, graphs kept while inactive."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from node_harness import (
    Harness,
    SceneCamera,
    model_parameters,
    start_node_process,
    stop_node_process,
    write_parameters,
)
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from dinov2_ros.ros.perception_node import PerceptionNode

SECOND = 1_000_000_000
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class LifecycleClient:
    """The lifecycle services of one node, called from the harness's node."""

    def __init__(self, harness: Harness, node_name: str, timeout_s: float = 10.0) -> None:
        self._harness = harness
        self._change = harness.node.create_client(ChangeState, f"{node_name}/change_state")
        self._get = harness.node.create_client(GetState, f"{node_name}/get_state")
        ready = harness.spin_until(lambda: self._change.service_is_ready() and self._get.service_is_ready(), timeout_s)
        assert ready, f"no lifecycle services of {node_name}"

    def _call(self, client, request):
        future = client.call_async(request)
        assert self._harness.spin_until(future.done, timeout_s=30.0)
        return future.result()

    def state(self) -> str:
        return self._call(self._get, GetState.Request()).current_state.label

    def change(self, transition: int) -> bool:
        return self._call(self._change, ChangeState.Request(transition=Transition(id=transition))).success


def test_configure_activate_deactivate_activate_cleanup_from_a_lifecycle_client(context, graph_dir):
    harness = Harness(context, "lifecycle_manager")
    values = model_parameters(graph_dir) | {"camera.width": 160, "camera.height": 120, "diagnostics.period_s": 0.2}
    node = PerceptionNode(
        context=context, namespace="managed", parameter_overrides=[Parameter(n, value=v) for n, v in values.items()]
    )
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/managed/image")
    info_pub = harness.publisher(CameraInfo, "/managed/camera_info")
    outputs = harness.record(Detection2DArray, "/managed/dinov2/objects_2d")
    labels = harness.record(LabelInfo, "/managed/dinov2/label_info", LATCHED)
    diagnostics = harness.record(DiagnosticArray, "/diagnostics")
    stamp = [0]

    def stream(seconds: float, until=None) -> None:
        """Publish the camera at 20 Hz for `seconds`, or until `until()` holds."""
        for _ in range(int(seconds * 20)):
            stamp[0] += SECOND // 20
            image, info, _ = camera.messages(stamp[0])
            info_pub.publish(info)
            image_pub.publish(image)
            harness.spin_for(0.05)
            if until is not None and until():
                return

    def model_message() -> str:
        diagnostics.clear()
        assert harness.spin_until(lambda: diagnostics)
        return next(s.message for s in diagnostics[-1].status if s.name.endswith(": model"))

    try:
        lifecycle = LifecycleClient(harness, "/managed/dinov2")
        assert lifecycle.state() == "unconfigured"
        assert node.pipeline is None
        assert model_message().startswith("unconfigured")
        stream(1.0)
        assert not outputs

        assert lifecycle.change(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "inactive"
        assert set(node.pipeline.graphs) == {(120, 160)}, "the configured size's graph is prepared at configure"
        stream(1.0)
        assert not outputs, "no output while inactive"
        assert model_message().startswith("inactive")

        assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
        assert lifecycle.state() == "active"
        stream(10.0, until=lambda: len(outputs) >= 3)
        assert len(outputs) >= 3
        assert harness.spin_until(lambda: labels), "LabelInfo is latched on activation"

        assert lifecycle.change(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == "inactive"
        harness.spin_for(0.3)  # the last batch's output still in flight
        published = len(outputs)
        stream(1.5)
        assert len(outputs) == published, "no output while inactive"
        assert set(node.pipeline.graphs) == {(120, 160)}, "deactivate keeps the graphs"

        assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
        stream(10.0, until=lambda: len(outputs) >= published + 3)
        assert len(outputs) >= published + 3, "output resumes on the second activation"

        assert lifecycle.change(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.change(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == "unconfigured"
        assert node.pipeline is None and not node.cameras, "cleanup closes the backends"
        assert model_message().startswith("unconfigured")
        services = {name for name, _ in harness.node.get_service_names_and_types()}
        assert harness.spin_until(
            lambda: "/managed/dinov2/list_classes" not in {n for n, _ in harness.node.get_service_names_and_types()}
        ), f"the class services go with cleanup (seen {sorted(services)})"

        assert lifecycle.change(Transition.TRANSITION_CONFIGURE), "configure works again after cleanup"
        assert set(node.pipeline.graphs) == {(120, 160)}
    finally:
        node.destroy_node()
        harness.close()


def test_a_refused_configuration_stays_unconfigured_and_says_why(context, graph_dir):
    harness = Harness(context, "lifecycle_manager_refused")
    values = model_parameters(graph_dir) | {"cameras": ["front", "side"], "graphs.max_open": 1}
    values |= {"front.width": 160, "front.height": 120, "side.width": 128, "side.height": 96}
    node = PerceptionNode(
        context=context, namespace="refused", parameter_overrides=[Parameter(n, value=v) for n, v in values.items()]
    )
    harness.add_node(node)
    try:
        lifecycle = LifecycleClient(harness, "/refused/dinov2")
        assert not lifecycle.change(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "unconfigured"
        assert "raise graphs.max_open to 2" in str(node.configure_error)
        assert node.pipeline is None
    finally:
        node.destroy_node()
        harness.close()


def test_the_executable_with_autostart_false_waits_unconfigured_for_a_lifecycle_manager(context, graph_dir, tmp_path):
    values = model_parameters(graph_dir) | {"autostart": False, "camera.width": 160, "camera.height": 120}
    params = write_parameters(tmp_path / "managed.yaml", values)
    log = tmp_path / "node.log"
    process = start_node_process(["--params-file", str(params), "-r", "__ns:=/auto"], log)
    harness = Harness(context, "auto_manager")
    camera = SceneCamera(160, 120)
    image_pub, info_pub = harness.publisher(Image, "/auto/image"), harness.publisher(CameraInfo, "/auto/camera_info")
    outputs = harness.record(Detection2DArray, "/auto/dinov2/objects_2d")
    try:
        lifecycle = LifecycleClient(harness, "/auto/dinov2", timeout_s=60.0)
        assert lifecycle.state() == "unconfigured", log.read_text()
        for index in range(20):  # no output before a manager brings it up
            image, info, _ = camera.messages((index + 1) * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            harness.spin_for(0.05)
        assert not outputs
        assert lifecycle.change(Transition.TRANSITION_CONFIGURE), log.read_text()
        assert lifecycle.change(Transition.TRANSITION_ACTIVATE), log.read_text()
        for index in range(20, 400):
            image, info, _ = camera.messages((index + 1) * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: len(outputs) >= 3, timeout_s=0.1):
                break
        assert len(outputs) >= 3, log.read_text()
    finally:
        harness.close()
        assert stop_node_process(process) == 0, log.read_text()
    text = log.read_text()
    assert "autostart is false: unconfigured, waiting for a lifecycle manager" in text
    assert text.index("autostart is false") < text.index("preparing graph 1/1 for 160x120 frames")

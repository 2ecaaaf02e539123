"""The `perception_node` executable: cameras in; objects, depth, markers and diagnostics out.

Subscription callbacks only store the newest message per camera; one worker thread takes every
camera's newest complete frame and runs them through the FramePipeline in one batched call, so
latency stays bounded when cameras are faster than inference. Bad input is a warning and a count in
/diagnostics, never a crash, and never costs the good frames around it. It is a lifecycle node
(configure loads, activate runs; see PerceptionNode), which the executable brings to active itself
unless its autostart parameter is false.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from dinov2_ros.model.content_identity import encoder_name
from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame_pipeline import CameraFrame, FramePipeline, FrameResult, depth_size_problem
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.ros import detection_messages as messages
from dinov2_ros.ros.camera_streams import CameraStreams
from dinov2_ros.ros.class_services import ClassServices
from dinov2_ros.ros.frame_slots import BatchPolicy, PairedFrame, Unpaired, batch_start_delay
from dinov2_ros.ros.graph_export import export_in_subprocess
from dinov2_ros.ros.graph_preparation import WAITING_FOR_GRAPH, GraphPreparation
from dinov2_ros.ros.image_conversion import depth_image_to_metres
from dinov2_ros.ros.node_main import spin_node
from dinov2_ros.ros.node_parameters import RUNTIME_PARAMETERS, NodeSettings, declare_parameters
from dinov2_ros.ros.ros_logging import forward_package_logs, stop_forwarding
from dinov2_ros.ros.warning_throttle import WarningThrottle
from dinov2_ros.runtime.graph_source import GraphSource

NODE_NAME = "dinov2"  # as perception.launch.py (node_name) and the README name it: /dinov2
# how often an idle worker looks at the slots without a wake-up (pairing timeouts are reported then)
IDLE_POLL_S = 0.1


def is_uncalibrated(info, rectified: bool = False) -> bool:
    """CameraInfo's convention for an uncalibrated camera: K (P for a rectified image) all zeros, as
    camera_info_manager publishes without a calibration file (usb_cam, v4l2_camera)."""
    return not any(info.p if rectified else info.k)


def camera_model_from_info(info, rectified: bool = False) -> PinholeCameraModel:
    """PinholeCameraModel of the image a sensor_msgs/CameraInfo describes, binning and ROI applied as
    image_geometry's fromCameraInfo does (REP 104; see PinholeCameraModel.from_camera_info), with P
    and no distortion for a `rectified` image. ValueError for missing or invalid intrinsics."""
    roi = info.roi
    return PinholeCameraModel.from_camera_info(
        info.k,
        info.d,
        info.p,
        info.width,
        info.height,
        info.distortion_model or "plumb_bob",
        rectified=rectified,
        binning=(info.binning_x, info.binning_y),
        roi=(roi.x_offset, roi.y_offset, roi.width, roi.height),
    )


def _image_size_problem(info, model: PinholeCameraModel, image: np.ndarray) -> str:
    """Why the image does not fit its CameraInfo, or ''."""
    height, width = image.shape[:2]
    if (model.width, model.height) == (width, height):
        return ""
    roi = info.roi
    crop = f"roi {roi.width}x{roi.height} at ({roi.x_offset}, {roi.y_offset})" if roi.width else "no roi"
    return (
        f"CameraInfo describes a {model.width}x{model.height} image (sensor {info.width}x{info.height}, binning "
        f"{info.binning_x}x{info.binning_y}, {crop}; REP 104) but the image is {width}x{height}; publish the "
        "camera_info of this image stream, with the binning and roi the driver applied"
    )


def depth_points(result: FrameResult, stride: int) -> np.ndarray:
    """(N, 3) points of every `stride`-th valid depth pixel, back-projected with the camera model."""
    depth, model = result.depth, result.frame.camera_model
    rows, cols = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    z = depth[rows, cols]
    valid = np.isfinite(z)
    return model.back_project_pixels(cols[valid], rows[valid], z[valid])


class PerceptionNode(LifecycleNode):
    """See the module docstring; parameters are documented in config/perception.yaml.

    A managed (lifecycle) node. Constructed, it is unconfigured: parameters declared, /diagnostics
    published, nothing loaded. configure loads the weights, opens the graphs of the configured camera
    sizes and creates the publishers and the class services; activate subscribes to the cameras and
    starts the worker; deactivate unsubscribes and stops inference, keeping everything loaded;
    cleanup closes the backends (their GPU memory) and forgets classes not saved to prototypes.file.
    `bring_up` (what the executable does unless autostart is false) configures and activates it.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        # what destroy_node releases: set first, as rclpy destroys a node whose parameters were refused too
        self.pipeline: FramePipeline | None = None
        self.cameras: dict[str, CameraStreams] = {}
        self.configure_error: Exception | None = None  # why the last configure failed
        self._preparation: GraphPreparation | None = None
        self._tracker = None  # ObjectTracker when tracking.enabled: kept for the node's life, so ids are never reused
        self._class_services: list = []
        self._worker: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state = "unconfigured"
        self._log_handler = None
        self.settings: NodeSettings = declare_parameters(self)
        self._log_handler = forward_package_logs(self)
        self._throttle = WarningThrottle(0.0)  # interval: warnings.throttle_s, set by _apply
        self._warned_uncalibrated: set[str] = set()
        self._options: dict[str, object] = {}
        self._apply(self.get_parameters(RUNTIME_PARAMETERS))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.settings.diagnostics_period_s, self._publish_diagnostics)

    # ----- lifecycle -----
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.configure_error = None
        try:
            self._configure()
        except Exception as error:  # a refused configuration: say what to change, stay unconfigured
            self.configure_error = error
            self.get_logger().error(f"configure failed: {type(error).__name__}: {error}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._state = "inactive"
        self.get_logger().info("configured: activate to subscribe to the cameras and publish")
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        model = self.settings.model
        if self.settings.tracking and self._tracker is None:
            self._tracker = _object_tracker(self.settings.lost_timeout_s)
        source = GraphSource(model)
        self.pipeline = self._create_pipeline(source)
        logger = self.get_logger()
        export = (
            functools.partial(export_in_subprocess, source, progress=logger.info, warn=logger.warning)
            if model.backend != "torch"
            else None
        )
        self._preparation = GraphPreparation(self.pipeline, self.settings.max_open_graphs, self.get_logger(), export)
        self._preparation.prepare_configured(self.settings.cameras)
        names = [camera.name for camera in self.settings.cameras]
        several = len(names) > 1
        for camera in self.settings.cameras:
            self.cameras[camera.name] = CameraStreams(
                self,
                camera,
                prefix=f"{camera.name}/" if several else "",
                reliable=self.settings.reliable,
                wake=self._wake_worker,
                warn=functools.partial(self._warn, camera.name),
            )
        self._apply(self.get_parameters(RUNTIME_PARAMETERS))  # the score threshold, the new slots' pairing
        if model.detector == "exemplar":
            before = set(self.services)
            ClassServices(self, self.pipeline, names, self._classes_changed)
            self._class_services = [service for service in self.services if service not in before]

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the lifecycle publishers
        self._state = "active"
        self._publish_label_info()
        for camera in self.cameras.values():
            camera.subscribe()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="dinov2_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: subscribed to {', '.join(c.image_topic for c in self.cameras.values())}")
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        self._state = "inactive"
        self.get_logger().info("inactive: unsubscribed, inference stopped; graphs and classes kept")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: backends closed; configure to load them again")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured: configure can be tried again

    def _stop_worker(self) -> None:
        """Unsubscribe and end the worker after its current batch."""
        for camera in self.cameras.values():
            camera.unsubscribe()
        self._stop.set()
        self._wake.set()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None

    def _release(self) -> None:
        """Back to unconfigured from any state: stop, destroy the endpoints, close the backends."""
        self._stop_worker()
        self._state = "unconfigured"
        for service in self._class_services:
            self.destroy_service(service)
        self._class_services = []
        for camera in self.cameras.values():
            camera.destroy()
        self.cameras = {}
        if self._preparation is not None:
            self._preparation.wait()  # a graph being opened is closed with the others
            self._preparation = None
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None

    # ----- set-up -----
    def _create_pipeline(self, source: GraphSource) -> FramePipeline:
        model = self.settings.model
        self._log_model_choice()
        store = self._prototype_store(source) if model.detector == "exemplar" else None
        class_names = dict(enumerate(source.class_names())) if model.detector == "center" else None
        return FramePipeline(source, store, class_names, max_classes=model.max_classes)

    def _log_model_choice(self) -> None:
        model = self.settings.model
        self.get_logger().info(f"running {model.describe()}")
        if model.uses_random_weights:
            self.get_logger().warning(
                "RANDOM WEIGHTS were requested (model.weights or model.depth_weights is 'random'): depth and "
                "objects are meaningless; this is for demos and tests only. Set real checkpoints to perceive."
            )

    def _prototype_store(self, source: GraphSource) -> PrototypeStore:
        model = self.settings.model
        encoder = encoder_name(model.variant, model.weights)  # as `dinov2-ros teach` names it
        input_size = (model.input_height, model.input_width)
        path = self.settings.prototypes_file
        if path and (file := Path(path).expanduser()).is_file():
            store = PrototypeStore.load(file, encoder=encoder, input_size=input_size)
            self.get_logger().info(f"loaded classes {store.class_ids} from {path}")
            return store
        return PrototypeStore(encoder, input_size, source.embed_dim())

    # ----- parameters changeable at run time -----
    def _on_set_parameters(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        try:
            self._apply(parameters)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if any(p.name == "detection.score_threshold" for p in parameters):
            self._publish_label_info()  # LabelInfo carries the threshold
        return SetParametersResult(successful=True)

    def _apply(self, parameters: Sequence[Parameter]) -> None:
        values = {p.name: p.value for p in parameters if p.name in RUNTIME_PARAMETERS}
        if "detection.score_threshold" in values and self.pipeline is not None:
            self.pipeline.score_threshold = values["detection.score_threshold"]
        if "warnings.throttle_s" in values:
            self._throttle.interval_s = values["warnings.throttle_s"]
        for camera in self.cameras.values():
            if "pairing.tolerance_s" in values:
                camera.slot.tolerance_ns = int(values["pairing.tolerance_s"] * 1e9)
            if "pairing.timeout_s" in values:
                camera.slot.timeout_ns = int(values["pairing.timeout_s"] * 1e9)
        self._options.update(values)
        self._batch_policy = BatchPolicy(
            wait_for_new_frame=self._options["scheduling.wait_for_new_frame"],
            batch_wait_ns=int(self._options["scheduling.batch_wait_s"] * 1e9),
        )

    # ----- classes -----
    def _classes_changed(self) -> None:
        if self.settings.prototypes_file:
            self.pipeline.save_prototypes(Path(self.settings.prototypes_file).expanduser())
        self._publish_label_info()

    def _publish_label_info(self) -> None:
        """Latch the class names (only while active: activation publishes them again)."""
        if self._state != "active":
            return
        labels = self.pipeline.labels()
        for camera in self.cameras.values():
            header = Header(stamp=self.get_clock().now().to_msg())
            camera.label_info.publish(messages.to_label_info(labels, self.pipeline.score_threshold, header))

    # ----- the worker -----
    def _wake_worker(self) -> None:
        self._wake.set()
        # yield the GIL so the worker starts now, not when this executor thread next blocks in its
        # wait (measured here: 0.5 ms -> 0.1 ms from image callback to worker)
        time.sleep(0)

    def _work(self) -> None:
        slots = [camera.slot for camera in self.cameras.values()]
        idle_since_ns, timeout_s = 0, IDLE_POLL_S
        while not self._stop.is_set():
            self._wake.wait(timeout=timeout_s)
            self._wake.clear()
            delay_ns = batch_start_delay(slots, idle_since_ns, time.monotonic_ns(), self._batch_policy)
            if delay_ns == 0:
                paired, frames = self._collect()
                if frames:
                    self._run(paired, frames)
                    idle_since_ns = time.monotonic_ns()
            timeout_s = delay_ns / 1e9 if delay_ns else IDLE_POLL_S

    def _collect(self) -> tuple[list[PairedFrame], list[CameraFrame]]:
        paired, frames = [], []
        for camera in self.cameras.values():
            taken = camera.slot.take(time.monotonic_ns())
            if isinstance(taken, Unpaired):
                self._reject(camera.name, "pairing", str(taken), problem=f"no {taken.missing}")
            elif taken is not None:
                try:
                    frames.append(self._to_frame(camera, taken))
                    paired.append(taken)
                except _Rejected as rejected:
                    if rejected.category == WAITING_FOR_GRAPH:  # dropped and counted, nothing wrong with it
                        camera.statistics.frame_waited_for_graph()
                        self._warn(camera.name, rejected.problem, f"frame skipped: {rejected}", level="info")
                    else:
                        self._reject(camera.name, rejected.category, str(rejected), rejected.problem)
        return paired, frames

    def _to_frame(self, camera: CameraStreams, paired: PairedFrame) -> CameraFrame:
        image = _checked("image", camera.to_rgb, paired.image)
        if refusal := self._preparation.admit(camera.name, image.shape[:2]):
            raise _Rejected(refusal.category, refusal.detail, refusal.problem)
        info = paired.camera_info
        camera.statistics.uncalibrated = is_uncalibrated(info, camera.rectified)
        if camera.statistics.uncalibrated:
            model = None  # 2D objects and depth still come; 3D objects need intrinsics
            self._warn_uncalibrated(camera.name)
        else:
            model = _checked("camera_info", camera_model_from_info, info, camera.rectified)
            if problem := _image_size_problem(info, model, image):
                raise _Rejected("size", problem, "camera_info size")
        depth = _checked("depth", depth_image_to_metres, paired.depth) if paired.depth is not None else None
        names = f"depth image on {camera.depth_topic}", f"the camera image on {camera.image_topic}"
        if depth is not None and (problem := depth_size_problem(depth, image, *names)):
            raise _Rejected("depth", problem, "depth size")
        return _checked("size", lambda: CameraFrame(camera.name, image, depth, model, paired.stamp_ns))

    def _run(self, paired: list[PairedFrame], frames: list[CameraFrame]) -> None:
        try:
            results = self.pipeline.process(frames)
        except Exception as error:  # a failing graph must not stop the node: report it per camera
            for frame in frames:
                self._reject(frame.camera, "inference", f"{type(error).__name__}: {str(error).strip()}")
            return
        if self._tracker is not None:
            # the tracker's clock is the images' arrival here (monotonic), not their stamps: a stamp can
            # be zero, or jump back and forth with a device clock reset or a looped bag
            threshold = self.pipeline.score_threshold
            results = [
                self._tracker.assign(result, taken.received_ns / 1e9, threshold)
                for taken, result in zip(paired, results, strict=True)
            ]
        labels = self.pipeline.labels()
        # every camera's objects first (planners wait for them), then depth and the debug outputs
        for publish in (self._publish_objects, functools.partial(self._publish_secondary, labels=labels)):
            for taken, result in zip(paired, results, strict=True):
                try:
                    publish(self.cameras[taken.camera], taken, result)
                except Exception as error:  # one bad result must not stop the worker, nor the other cameras
                    if not self.context.ok():
                        return  # shutting down (Ctrl-C): the publishers are gone mid-frame
                    self._reject(taken.camera, "publish", f"{type(error).__name__}: {error}")

    def _publish_objects(self, camera: CameraStreams, taken: PairedFrame, result: FrameResult) -> None:
        header = taken.image.header
        if result.frame.camera_model is not None:  # uncalibrated: no 3D objects (see _warn_uncalibrated)
            camera.objects.publish(messages.to_detection3d_array(result, header))
        camera.objects_2d.publish(messages.to_detection2d_array(result, header))
        # a zero stamp (warned on receipt) would read as 56 years of latency
        latency_s = (self.get_clock().now().nanoseconds - taken.stamp_ns) / 1e9 if taken.stamp_ns else None
        in_node_s = (time.monotonic_ns() - taken.received_ns) / 1e9 - result.inference_s
        camera.statistics.result_published(time.monotonic(), latency_s, result.inference_s, in_node_s)
        camera.statistics.objects_published(result.detections)

    def _publish_secondary(
        self, camera: CameraStreams, taken: PairedFrame, result: FrameResult, labels: dict[int, str]
    ) -> None:
        header = taken.image.header
        # like image_pipeline, each output costs nothing while nobody subscribes (a 640x480 depth
        # message is a 1.2 MB copy)
        if result.depth is not None and (
            camera.depth.get_subscription_count() or camera.depth_info.get_subscription_count()
        ):
            depth, info = messages.to_depth_messages(result, header, taken.camera_info)
            camera.depth.publish(depth)
            camera.depth_info.publish(info)
        if camera.debug_info.get_subscription_count():
            camera.debug_info.publish(messages.camera_info_for_output(taken.camera_info, header))
        if camera.instances.get_subscription_count() or camera.instances_info.get_subscription_count():
            instances, info = messages.to_instances_messages(result, header, taken.camera_info)
            camera.instances.publish(instances)
            camera.instances_info.publish(info)
        wants_points = self._options["output.points"] and camera.points.get_subscription_count()
        if wants_points and result.depth is not None and result.frame.camera_model is not None:
            points = depth_points(result, self._options["output.points_stride"])
            camera.points.publish(messages.to_point_cloud(points, header))
        if camera.markers.get_subscription_count():
            camera.markers.publish(messages.to_markers(result, header, labels))
        if camera.debug_image.get_subscription_count():
            camera.debug_image.publish(
                messages.debug_image_message(result, labels, self._options["output.debug_max_depth_m"], header)
            )

    def _reject(self, camera: str, category: str, detail: str, problem: str = "") -> None:
        """Count a skipped frame and warn, throttled per camera and problem (`problem` tells faults of
        one category apart, e.g. an unknown encoding from a truncated image)."""
        self.cameras[camera].statistics.frame_rejected(time.monotonic(), category, detail)
        self._warn(camera, f"{category}: {problem}", f"frame skipped ({category}): {detail}")

    def _warn(self, camera: str, problem: str, text: str, level: str = "warning") -> None:
        """Log about one camera at most once per warnings.throttle_s and (camera, problem); `level`
        "error", "warning", or "info" for what is expected and counted (frames skipped while their
        graph is prepared)."""
        if not self._throttle.allow((camera, problem)):
            return
        # one call per severity: rclpy refuses a call site whose severity changes between calls
        logger, message = self.get_logger(), f"camera '{camera}': {text}"
        if level == "error":
            logger.error(message)
        elif level == "info":
            logger.info(message)
        else:
            logger.warning(message)

    def _warn_uncalibrated(self, camera: str) -> None:
        """Once per camera. No Detection3DArray is published for such a frame rather than an empty
        one: an empty array says "no objects in view", on which a planner clears its scene, while
        silence on dinov2/objects (and the WARN on /diagnostics) says "no 3D information"."""
        if camera not in self._warned_uncalibrated:
            self._warned_uncalibrated.add(camera)
            self.get_logger().warning(
                f"camera '{camera}': CameraInfo K (P for a rectified camera) is all zeros, the convention for "
                "an uncalibrated camera: "
                "publishing dinov2/objects_2d and depth, but no 3D objects (dinov2/objects) until the camera is "
                "calibrated (camera_calibration; the driver's camera_info_url)"
            )

    # ----- diagnostics -----
    def _publish_diagnostics(self) -> None:
        """The model's status in every state (its message names the lifecycle state unless active),
        and each camera's while active."""
        model = self.settings.model
        graphs = self.pipeline.graphs.values() if self.pipeline is not None else ()
        if self._state != "active":
            level, message = DiagnosticStatus.OK, f"{self._state}: no inference (a lifecycle manager activates it)"
            if self.configure_error is not None:
                level, message = DiagnosticStatus.ERROR, f"configure failed: {self.configure_error}"
        elif model.uses_random_weights:
            level, message = DiagnosticStatus.WARN, "RANDOM WEIGHTS (demo/tests only)"
        else:
            level, message = DiagnosticStatus.OK, "ok"
        node_status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: model",
            message=message,
            hardware_id=model.backend,
            values=[
                KeyValue(key="lifecycle state", value=self._state),
                KeyValue(key="model", value=model.describe()),
                KeyValue(key="graphs", value=", ".join(spec.key for spec in graphs)),
            ],
        )
        array = DiagnosticArray(status=[node_status])
        array.header.stamp = self.get_clock().now().to_msg()
        if self._state == "active":
            array.status += [camera.status(self.get_name()) for camera in self.cameras.values()]
        self._diagnostics.publish(array)

    def destroy_node(self) -> None:
        self._release()
        if self._log_handler is not None:
            stop_forwarding(self._log_handler)
            self._log_handler = None
        super().destroy_node()


class _Rejected(ValueError):
    """A frame that cannot be processed: the input at fault (`category`, for /diagnostics) and the
    kind of problem (`problem`, for the warning throttle)."""

    def __init__(self, category: str, detail: str, problem: str = "") -> None:
        super().__init__(detail)
        self.category = category
        self.problem = problem


def _object_tracker(lost_timeout_s: float):
    """The ObjectTracker, or a clear error when its library is missing (an apt ROS machine that has not
    installed requirements/runtime.txt)."""
    try:
        from dinov2_ros.perception.object_tracking import ObjectTracker
    except ImportError as error:
        raise RuntimeError(
            f"tracking.enabled is true but the tracker cannot be imported ({error}): install it with "
            "`python3 -m pip install -r requirements/runtime.txt` (supervision's ByteTrack), or set "
            "tracking.enabled false to number each frame's objects instead of tracking them"
        ) from error
    return ObjectTracker(lost_timeout_s)


def _checked(category: str, convert, *args):
    try:
        return convert(*args)
    except ValueError as error:
        raise _Rejected(category, str(error), getattr(error, "problem", "")) from error


def bring_up(node: PerceptionNode) -> None:
    """Configure and activate `node`, what the executable does with autostart (the default).

    Raises the error that refused the configuration (a ValueError says what to change), or
    RuntimeError when activation fails.
    """
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        raise node.configure_error or RuntimeError("configuring perception_node failed: see its log")
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        raise RuntimeError("activating perception_node failed: see its log")


def _started_node() -> PerceptionNode:
    node = PerceptionNode()
    if node.settings.autostart:
        try:
            bring_up(node)
        except BaseException:
            node.destroy_node()
            raise
    else:
        node.get_logger().info("autostart is false: unconfigured, waiting for a lifecycle manager")
    return node


def main(args: list[str] | None = None) -> int:
    return spin_node(_started_node, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())

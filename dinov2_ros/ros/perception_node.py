"""The `perception_node` executable: cameras in; objects, depth, markers and diagnostics out.

Subscription callbacks only store the newest message per camera; one worker thread turns every
camera's newest complete frame into a CameraFrame (frame_intake) and runs them through the
FramePipeline in one call, so latency stays bounded when cameras are faster than inference. Bad input
is a warning and a count in /diagnostics, never a crash, and never costs the good frames around it.
It is a lifecycle node (configure loads, activate runs; see PerceptionNode), which the executable
brings to active itself unless its autostart parameter is false.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from dinov2_ros.perception.frame import CameraFrame, FrameResult
from dinov2_ros.perception.frame_pipeline import FramePipeline, InferredBatch
from dinov2_ros.perception.graph_preparation import GraphPreparation
from dinov2_ros.perception.object_tracking import ObjectTracker
from dinov2_ros.perception.prompt_templates import check_templates
from dinov2_ros.perception.prototypes import PrototypeStore, open_store
from dinov2_ros.perception.rejection import Rejection
from dinov2_ros.ros.camera_outputs import CameraOutputs, OutputOptions
from dinov2_ros.ros.camera_streams import CameraStreams
from dinov2_ros.ros.class_services import ClassServices
from dinov2_ros.ros.diagnostics import model_status
from dinov2_ros.ros.frame_intake import to_camera_frame
from dinov2_ros.ros.frame_slots import BatchPolicy, PairedFrame
from dinov2_ros.ros.frame_worker import FrameWorker
from dinov2_ros.ros.node_main import spin_node, started
from dinov2_ros.ros.node_parameters import RUNTIME_PARAMETERS, NodeSettings, declare_parameters
from dinov2_ros.ros.ros_logging import forward_package_logs, stop_forwarding, while_running
from dinov2_ros.ros.warning_throttle import CameraWarnings, WarningThrottle
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.export_process import ChildExporter
from dinov2_ros.weights.identity import encoder_name

NODE_NAME = "dinov2"  # as perception.launch.py (node_name) and the README name it: /dinov2


class PerceptionNode(LifecycleNode):
    """See the module docstring; parameters are documented in config/perception.yaml.

    Constructed, it is unconfigured: parameters declared, /diagnostics published, nothing loaded.
    configure opens the graphs of the configured camera sizes and creates the publishers and the
    class services; activate subscribes to the cameras and starts the worker; deactivate unsubscribes
    and stops inference, keeping everything loaded; cleanup closes the backends (their GPU memory)
    and forgets classes not saved to prototypes.file. `node_main.bring_up` configures and activates it.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        # what destroy_node releases: set first, as rclpy destroys a node whose parameters were refused too
        self.pipeline: FramePipeline | None = None
        self.cameras: dict[str, CameraStreams] = {}
        self.outputs: dict[str, CameraOutputs] = {}
        self.configure_error: Exception | None = None  # why the last configure failed
        self._tracker: ObjectTracker | None = None  # kept for the node's life, so ids are never reused
        self._class_services: list = []
        self._worker: FrameWorker | None = None
        self._exporter: ChildExporter | None = None  # makes a missing graph in a child process
        self._state = "unconfigured"
        self._log_handler = None
        self.settings: NodeSettings = declare_parameters(self)
        self._log_handler = forward_package_logs(self)
        self._warn = CameraWarnings(self.get_logger(), WarningThrottle(0.0))  # interval: warnings.throttle_s
        self._options: dict[str, object] = {}
        self._apply(self.get_parameters(RUNTIME_PARAMETERS))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # on the steady clock: with use_sim_time and no /clock yet, /diagnostics must still say why
        self.create_timer(
            self.settings.diagnostics_period_s, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )

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
        settings, model, logger = self.settings, self.settings.model, self.get_logger()
        logger.info(f"running {model.describe()}")
        if settings.tracking and self._tracker is None:
            self._tracker = ObjectTracker(settings.lost_timeout_s, settings.low_score_threshold)
        opener = BackendOpener(model)
        opener.ensure_backend()  # no TensorRT or GPU: refused here, in one line, before any camera size is known
        opener.ensure_weights()  # offline without the files: refused here, in one line
        info, warning = while_running(self)  # from the export's and the openings' threads
        self._exporter = ChildExporter(opener, progress=info, warn=warning)

        def on_open(size) -> None:  # a trained head's class names come with its graph
            if model.detector == "center" and self.pipeline is not None:
                self.pipeline.class_names = dict(enumerate(opener.class_names() or ()))
                self._publish_label_info()

        # the torch backend builds its graph unstored; with dino.txt the child export still makes the text encoder
        exporter = self._exporter if model.backend != "torch" or model.dinotxt_weights else None
        graphs = GraphPreparation(
            opener.open, settings.max_open_graphs, exporter, background=True,
            log=info, warn=warning, on_open=on_open,
        )  # fmt: skip
        store = self._prototype_store(opener) if model.detector == "exemplar" else None
        self.pipeline = FramePipeline(
            graphs, store, max_classes=model.max_classes, max_prototypes=model.max_prototypes, tracker=self._tracker
        )
        graphs.configure({camera.name: camera.size for camera in settings.cameras})
        several = len(settings.cameras) > 1
        for camera in settings.cameras:
            prefix = f"{camera.name}/" if several else ""
            warn = functools.partial(self._warn, camera.name)
            self.cameras[camera.name] = CameraStreams(self, camera, prefix, self._wake_worker, warn)
            self.outputs[camera.name] = CameraOutputs(
                self, prefix, points=bool(self._options["output.points"]), completed_depth=camera.use_depth
            )
        self._apply(self.get_parameters(RUNTIME_PARAMETERS))  # the score threshold, the new slots' pairing
        if model.detector == "exemplar":
            self._class_services = ClassServices(
                self, self.pipeline, list(self.cameras), self._classes_changed, self._text_prototype(opener)
            ).services

    def _text_prototype(self, opener: BackendOpener):
        """With dino.txt: text -> prototype on the store's text encoder graph (opened at the first text),
        set into dinotxt.prompt_templates as they are when the class is added; else None."""
        if not self.settings.model.dinotxt_weights:
            return None
        from dinov2_ros.perception.text_prompts import StoredPromptEncoder  # the tokenizer's regex and ftfy

        encoder = StoredPromptEncoder(opener.find_text_encoder_file, self.settings.model.threads)
        return lambda text: encoder.prototype(text, self._options["dinotxt.prompt_templates"])

    def _prototype_store(self, opener: BackendOpener) -> PrototypeStore:
        model, path = self.settings.model, self.settings.prototypes_file
        encoder = encoder_name(model.variant, model.weights, model.dinotxt_weights)  # as `dinov2-ros teach` does
        store, loaded = open_store(path, encoder, (model.input_height, model.input_width), opener.embed_dim())
        if loaded:
            self.get_logger().info(f"loaded classes {store.class_ids} from {path}")
        return store

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the lifecycle publishers
        self._state = "active"
        self._publish_label_info()
        slots = [camera.slot for camera in self.cameras.values()]
        self._worker = FrameWorker(slots, self._infer, self._finish, self._report, self._scheduling)
        for camera in self.cameras.values():
            camera.subscribe()
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
        if self._worker is not None:
            self._worker.stop()
        self._worker = None

    def _release(self) -> None:
        """Back to unconfigured from any state: stop, destroy the endpoints, close the backends."""
        self._stop_worker()
        self._state = "unconfigured"
        for service in self._class_services:
            self.destroy_service(service)
        self._class_services = []
        for camera in self.cameras.values():
            camera.unsubscribe()
        for outputs in self.outputs.values():
            outputs.destroy()
        self.cameras, self.outputs = {}, {}
        if self._exporter is not None:
            self._exporter.cancel()  # an export for a size being opened ends now, not in half a minute
            self._exporter = None
        if self.pipeline is not None:
            self.pipeline.close()  # a graph being opened is closed with the others
            self.pipeline = None

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
        if "dinotxt.prompt_templates" in values:
            values["dinotxt.prompt_templates"] = check_templates(values["dinotxt.prompt_templates"])
        if "detection.score_threshold" in values and self.pipeline is not None:
            self.pipeline.score_threshold = values["detection.score_threshold"]
        if "depth_completion.enabled" in values and self.pipeline is not None:
            self.pipeline.fill_depth_holes = values["depth_completion.enabled"]
        if "warnings.throttle_s" in values:
            self._warn.throttle.interval_s = values["warnings.throttle_s"]
        for camera in self.cameras.values():
            if "pairing.tolerance_s" in values:
                camera.slot.tolerance_ns = int(values["pairing.tolerance_s"] * 1e9)
            if "pairing.timeout_s" in values:
                camera.slot.timeout_ns = int(values["pairing.timeout_s"] * 1e9)
        self._options.update(values)
        option = self._options.get
        self._batch_policy = BatchPolicy(
            option("scheduling.wait_for_new_frame"), int(option("scheduling.batch_wait_s") * 1e9)
        )
        self._output_options = OutputOptions(
            option("output.points_stride"), option("output.debug_max_depth_m"), option("output.object_points_stride")
        )
        if "output.points" in values:  # dinov2/points is advertised only while it is on
            for outputs in self.outputs.values():
                outputs.set_points(values["output.points"], active=self._state == "active")

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
        for outputs in self.outputs.values():
            outputs.publish_labels(labels, self.pipeline.score_threshold, Header(stamp=self.get_clock().now().to_msg()))

    # ----- the worker -----
    def _scheduling(self) -> BatchPolicy:
        """scheduling.* with the recent graph call, which bounds the wait for other cameras' frames."""
        graph_call_s = self.pipeline.graph_call_s
        return dataclasses.replace(
            self._batch_policy, graph_call_ns=None if graph_call_s is None else int(graph_call_s * 1e9)
        )

    def _wake_worker(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    def _infer(self, batch: list[PairedFrame]) -> Iterator[tuple[list[PairedFrame], InferredBatch]]:
        """The inferring thread: messages -> frames (frame_intake), each rejection reported -> one graph
        call per camera size, each handed over as it ends (a camera does not wait for another's size)."""
        by_size: dict[tuple[int, int], list[tuple[PairedFrame, CameraFrame]]] = {}
        for paired in batch:
            try:
                frame = to_camera_frame(paired, self.cameras[paired.camera])
            except Rejection as rejection:
                self._report(paired.camera, rejection)
            else:
                by_size.setdefault(frame.size, []).append((paired, frame))
        for frames in by_size.values():
            yield [paired for paired, _ in frames], self.pipeline.infer([frame for _, frame in frames])

    def _finish(self, inferred: tuple[list[PairedFrame], InferredBatch]) -> None:
        """The finishing thread: decode, track, lift (FramePipeline.finish) -> publish, objects first."""
        batch, graphs = inferred
        results = self.pipeline.finish(graphs)
        labels = self.pipeline.labels()
        published = []
        for paired, result in zip(batch, results, strict=True):
            if isinstance(result, Rejection):
                self._report(paired.camera, result)
            else:
                published.append((paired, result))
        for publish in (self._publish_objects, self._publish_images):  # objects first: planners wait for them
            for paired, result in published:
                try:
                    publish(paired, result, labels)
                except Exception as error:  # one bad result must not stop the worker, nor the other cameras
                    if not self.context.ok():
                        return  # shutting down (Ctrl-C): the publishers are gone mid-frame
                    self._report(
                        paired.camera, Rejection("publish", type(error).__name__, f"{type(error).__name__}: {error}")
                    )

    def _publish_objects(self, paired: PairedFrame, result: FrameResult, labels) -> None:
        decisions = self.outputs[paired.camera].publish_objects(result, paired.image.header)
        self.cameras[paired.camera].result_published(paired, result, decisions)

    def _publish_images(self, paired: PairedFrame, result: FrameResult, labels) -> None:
        outputs = self.outputs[paired.camera]
        outputs.publish_images(result, paired.image.header, paired.camera_info, labels, self._output_options)

    def _report(self, camera: str, rejection: Rejection) -> None:
        self.cameras[camera].report(rejection)

    # ----- diagnostics -----
    @property
    def _diagnostic_name(self) -> str:
        """The node's name with its namespace, without the leading slash ("dinov2", "cell1/dinov2")."""
        return self.get_fully_qualified_name().lstrip("/")

    def _publish_diagnostics(self) -> None:
        """The model's status in every state, and each camera's while active."""
        graphs = [spec.key for spec in self.pipeline.graphs.values()] if self.pipeline is not None else []
        array = DiagnosticArray(
            # named by the namespaced name (cell1/dinov2), so nodes of several cells are told apart
            status=[model_status(self._diagnostic_name, self._state, self.settings.model, graphs, self.configure_error)]
        )
        array.header.stamp = self.get_clock().now().to_msg()
        if self._state == "active":
            array.status += [camera.status(self._diagnostic_name) for camera in self.cameras.values()]
        self._diagnostics.publish(array)

    def destroy_node(self) -> None:
        self._release()
        if self._log_handler is not None:
            stop_forwarding(self._log_handler)
            self._log_handler = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(lambda: started(PerceptionNode()), NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())

"""Teach, forget and list classes at run time through services of types every ROS 2 install has.

This package is one ament_python package, which cannot define .srv files, so the services reuse
rcl_interfaces (part of every ROS 2 install and of the rclpy wheels) with named, typed fields. They
are the node's own (`~/add_class`: `/dinov2/add_class` for the node named dinov2, beside its
lifecycle services):

- `dinov2/add_class` (rcl_interfaces/srv/SetParameters): parameters `class_name` (string), `box`
  (4 numbers: x1, y1, x2, y2 in the camera's pixels), `camera` (string; optional with one camera) and
  `text` (string: the part named in words, with dino.txt, `model.dinotxt_weights`). Teaches the part
  inside the box on that camera's newest processed frame, the text's prototype, or both; with a text,
  `class_name` may be left out (the text names the class).
- `dinov2/remove_class` (rcl_interfaces/srv/SetParameters): parameter `class_name`.
- `dinov2/list_classes` (rcl_interfaces/srv/ListParameters): `result.names` lists the class names in
  class-id order; `/dinov2/label_info` carries the id of each.

The one SetParametersResult in the response says whether it worked and, in `reason`, the class id or
what was wrong and how to fix it. For example:

    ros2 service call /dinov2/add_class rcl_interfaces/srv/SetParameters "{parameters: [
      {name: class_name, value: {type: 4, string_value: bolt}},
      {name: box, value: {type: 8, double_array_value: [120, 80, 200, 160]}}]}"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import ListParameters, SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter

from dinov2_ros.perception.frame_pipeline import FramePipeline


def add_class_request(
    name: str | None, box: Sequence[float] | None = None, camera: str | None = None, text: str | None = None
) -> SetParameters.Request:
    """A `dinov2/add_class` request: teach `name` from `box` (x1, y1, x2, y2 camera pixels), `text`, or both."""
    fields = [] if name is None else [Parameter("class_name", value=name)]
    if box is not None:
        fields.append(Parameter("box", value=[float(v) for v in box]))
    if camera is not None:
        fields.append(Parameter("camera", value=camera))
    if text is not None:
        fields.append(Parameter("text", value=text))
    return SetParameters.Request(parameters=[field.to_parameter_msg() for field in fields])


def _fields(request: SetParameters.Request, allowed: Sequence[str]) -> dict[str, Any]:
    fields = {p.name: Parameter.from_parameter_msg(p).value for p in request.parameters}
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; this service takes {list(allowed)}")
    return fields


def _class_name(fields: dict[str, Any], default: str | None = None) -> str:
    name = fields.get("class_name", default)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            "field class_name (a non-empty string) is required" + (" without a text" if default is None else "")
        )
    return name.strip()


def _text(fields: dict[str, Any]) -> str | None:
    text = fields.get("text")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise ValueError(f"field text must be a non-empty string (the part named in words), got {text!r}")
    return None if text is None else text.strip()


def _box(fields: dict[str, Any]) -> list[float]:
    box = fields.get("box")
    if box is None or isinstance(box, str | bool) or len(box) != 4:
        raise ValueError(f"field box must hold 4 numbers x1, y1, x2, y2 (camera pixels), got {box!r}")
    return [float(v) for v in box]


class ClassServices:
    """The three services; `on_change` runs after every successful add or remove (save, republish).

    `text_prototype(text)` turns a text into its prototype (the node's dino.txt PromptEncoder, run on
    the service's thread, not the frame worker's); None without dino.txt, where a text is refused.
    """

    def __init__(
        self,
        node: Node,
        pipeline: FramePipeline,
        cameras: Sequence[str],
        on_change: Callable[[], None],
        text_prototype: Callable[[str], Any] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._cameras = list(cameras)
        self._on_change = on_change
        self._text_prototype = text_prototype
        self._log = node.get_logger()
        self.services = [  # the node destroys them at cleanup
            node.create_service(SetParameters, "~/add_class", self._add),
            node.create_service(SetParameters, "~/remove_class", self._remove),
            node.create_service(ListParameters, "~/list_classes", self._list),
        ]

    def _camera(self, fields: dict[str, Any]) -> str:
        camera = fields.get("camera")
        if camera is None and len(self._cameras) == 1:
            return self._cameras[0]
        if camera not in self._cameras:
            raise ValueError(f"field camera must name one of the node's cameras {self._cameras}, got {camera!r}")
        return camera

    def _add(self, request: SetParameters.Request, response: SetParameters.Response) -> SetParameters.Response:
        def add() -> str:
            fields = _fields(request, ("class_name", "box", "camera", "text"))
            text = _text(fields)
            name = _class_name(fields, default=text)
            box = _box(fields) if "box" in fields or text is None else None
            camera = self._camera(fields) if box is not None else None
            prototypes = None
            if text is not None:
                if self._text_prototype is None:
                    raise ValueError(
                        "field text needs dino.txt: set model.dinotxt_weights (with model.variant vitl14_reg4) and "
                        "restart the node; without it, leave out the text and teach the part with a box alone"
                    )
                prototypes = self._text_prototype(text)[None]
            class_id = self._pipeline.add_class(name, camera=camera, box=box, text_prototypes=prototypes, prompt=text)
            sources = ([f"box {box} on camera '{camera}'"] if box is not None else []) + (
                [f"the text {text!r}"] if text is not None else []
            )
            return f"class '{name}' has id {class_id} (taught from {' and '.join(sources)})"

        return self._respond(response, add)

    def _remove(self, request: SetParameters.Request, response: SetParameters.Response) -> SetParameters.Response:
        def remove() -> str:
            name = _class_name(_fields(request, ("class_name",)))
            self._pipeline.remove_class(name)
            return f"class '{name}' removed"

        return self._respond(response, remove)

    def _respond(self, response: SetParameters.Response, action: Callable[[], str]) -> SetParameters.Response:
        try:
            reason = action()
        except ValueError as error:
            self._log.warning(f"class service refused: {error}")
            response.results = [SetParametersResult(successful=False, reason=str(error))]
            return response
        except Exception as error:  # e.g. ONNX Runtime cannot open a damaged text encoder graph: the node lives on
            reason = f"{type(error).__name__}: {error}"
            self._log.error(f"class service failed: {reason}")
            response.results = [SetParametersResult(successful=False, reason=reason)]
            return response
        self._log.info(reason)
        self._on_change()
        response.results = [SetParametersResult(successful=True, reason=reason)]
        return response

    def _list(self, request: ListParameters.Request, response: ListParameters.Response) -> ListParameters.Response:
        response.result.names = [name for _, name in sorted(self._pipeline.labels().items())]
        return response

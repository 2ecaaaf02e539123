"""The user's entry points agree with the node: launch arguments, parameter file and RViz config.

ROS launch is not installable here, so the launch files are read as Python source: the names they
pass must be the node's parameters, executables and topics.
"""

from __future__ import annotations

import ast

import yaml
from node_harness import REPO

from dinov2_ros.ros.node_parameters import CAMERA_PARAMETERS, NODE_PARAMETERS

LAUNCH = REPO / "launch"


def _declared_arguments(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        call.args[0].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument"
    }


def _module_constant(path, name: str):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} has no {name}")


def _parameter_arguments(path) -> dict[str, tuple[str, str]]:
    """PARAMETER_ARGUMENTS of a launch file: argument -> (parameter, type name)."""
    tree = ast.parse(path.read_text())
    assignment = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PARAMETER_ARGUMENTS")
    return {
        key.value: (value.elts[0].value, value.elts[1].id)  # ("camera.width", int)
        for key, value in zip(assignment.value.keys, assignment.value.values, strict=True)
    }


def test_perception_launch_offers_the_issue_arguments_and_maps_them_to_real_parameters():
    declared = _declared_arguments(LAUNCH / "perception.launch.py")
    wanted = {"image", "camera_info", "depth", "config", "backend", "model", "weights", "precision", "graph_dir"}
    assert wanted | {"rviz", "use_sim_time", "use_depth", "width", "height"} <= declared
    mapping = _parameter_arguments(LAUNCH / "perception.launch.py")
    assert set(mapping) <= declared
    camera = {f"camera.{name}": setting for name, setting in CAMERA_PARAMETERS.items()}
    for argument, (parameter, kind) in mapping.items():
        setting = {**NODE_PARAMETERS, **camera}.get(parameter)
        if parameter == "use_sim_time":  # rclpy's own
            assert kind == "bool"
            continue
        assert setting is not None, f"{argument}:= sets {parameter}, which the node does not have"
        assert kind == type(setting.default).__name__, f"{argument}:= passes a {kind}, {parameter} is not one"


def test_a_parameter_argument_overrides_the_file_only_when_given():
    """`autostart: false` or `use_sim_time: true` in a config:= file must hold unless typed on the line:
    every parameter argument defaults to empty, and empty ones are not passed."""
    path = LAUNCH / "perception.launch.py"
    defaults = _argument_defaults(path)
    for argument in _parameter_arguments(path):
        assert defaults[argument] == "", f"{argument}:= has a default, which would override the file"
    source = ast.unparse(next(f for f in ast.parse(path.read_text()).body if getattr(f, "name", "") == "_nodes"))
    assert "if value(argument)" in source
    from dinov2_ros.launch_support import as_parameter

    assert as_parameter("false", bool) is False and as_parameter("True", bool) is True
    assert as_parameter("640", int) == 640


def test_launch_files_start_the_packaged_executables():
    setup = (REPO / "setup.py").read_text()
    for path in LAUNCH.glob("*.launch.py"):
        for call in ast.walk(ast.parse(path.read_text())):
            keywords = {k.arg: k.value for k in getattr(call, "keywords", [])}
            if getattr(keywords.get("package"), "value", None) == "dinov2_ros":
                executable = keywords["executable"].value
                assert f'"{executable} = dinov2_ros.' in setup, f"{path.name}: {executable}"


def _argument_defaults(path) -> dict[str, str | None]:
    """Declared launch arguments and their literal defaults (None for a substitution)."""
    return {
        call.args[0].value: next(getattr(k.value, "value", None) for k in call.keywords if k.arg == "default_value")
        for call in ast.walk(ast.parse(path.read_text()))
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument"
    }


def _used_configurations(path) -> set[str]:
    return {
        call.args[0].value
        for call in ast.walk(ast.parse(path.read_text()))
        if isinstance(call, ast.Call)
        and getattr(call.func, "id", "") == "LaunchConfiguration"
        and isinstance(call.args[0], ast.Constant)
    }


def test_demo_starts_the_node_with_random_weights_by_default():
    text = (LAUNCH / "demo.launch.py").read_text()
    assert "perception_node" in text and "synthetic_camera_node" in text and "demo_monitor" in text
    defaults = _argument_defaults(LAUNCH / "demo.launch.py")
    assert defaults["weights"] == "random" and defaults["depth_weights"] == "random"
    mapping = _module_constant(LAUNCH / "demo.launch.py", "PARAMETER_ARGUMENTS")
    assert set(mapping) <= set(defaults) and set(mapping.values()) <= set(NODE_PARAMETERS)


def test_demo_lists_only_the_arguments_it_uses():
    """`ros2 launch --show-args` lists an included file's arguments too, and the demo sets the camera
    topics itself: so it includes no launch file, and every argument it declares is read."""
    path = LAUNCH / "demo.launch.py"
    assert "IncludeLaunchDescription" not in path.read_text()
    assert set(_argument_defaults(path)) == _used_configurations(path)


def test_rviz_is_off_by_default_for_a_robot_and_both_launch_files_start_it_only_where_installed():
    assert _argument_defaults(LAUNCH / "perception.launch.py")["rviz"] == "false"
    support = ast.parse((REPO / "dinov2_ros" / "launch_support.py").read_text())
    source = ast.unparse(next(f for f in support.body if getattr(f, "name", "") == "rviz_where_installed"))
    assert "get_package_prefix('rviz2')" in source and "except PackageNotFoundError" in source
    assert "RViz skipped" in source, "a skipped RViz is logged"
    for path in LAUNCH.glob("*.launch.py"):
        text = path.read_text()
        assert "rviz_where_installed(" in text and "'rviz2'" not in text and '"rviz2"' not in text, path.name


def test_the_parameter_file_sets_and_documents_every_parameter():
    text = (REPO / "config" / "perception.yaml").read_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    cameras = values.pop("cameras")
    for camera in cameras:
        assert set(values.pop(camera)) == set(CAMERA_PARAMETERS)
    assert set(values) == set(NODE_PARAMETERS) - {"cameras"}
    previous = ""  # the last line that is not a parameter: a comment documents the keys below it
    for line in text.splitlines():
        key = line.strip().split(":")[0]
        if key in NODE_PARAMETERS:
            assert previous.startswith("#"), f"{key} has no comment above it"
        else:
            previous = line.strip()
    for name, spec in NODE_PARAMETERS.items():
        if name != "cameras":
            assert values[name] == spec.default, f"{name}: the file and the node disagree on the default"


def test_rviz_config_shows_the_node_outputs():
    config = yaml.safe_load((REPO / "config" / "perception.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {
        d.get("Topic", {}).get("Value") or d.get("Depth Map Topic")
        for d in displays
        if d["Class"] != "rviz_default_plugins/Grid"
    }
    assert {"/dinov2/debug/image", "/dinov2/depth/image", "/dinov2/markers"} <= topics
    classes = {d["Class"] for d in displays}
    assert {"rviz_default_plugins/Image", "rviz_default_plugins/MarkerArray"} <= classes

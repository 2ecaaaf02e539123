"""package.xml and the code agree: every ROS package the code imports is an exec_depend (so rosdep
installs it on users' machines), and no ROS package is declared that nothing imports."""

import ast
import os
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# rosdep keys of Python modules that are not ROS packages
SYSTEM_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "scipy": "python3-scipy"}
# declared for the user's entry points rather than imported: RViz is started by the launch files
NOT_IMPORTED = {"rviz2"}


def imported_modules() -> set[str]:
    modules = set()
    for path in [*(REPO / "dinov2_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def is_ros_package(name: str) -> bool:
    prefixes = os.environ["AMENT_PREFIX_PATH"].split(os.pathsep)
    return name in ("launch", "launch_ros") or any(
        (Path(prefix) / "share" / name / "package.xml").is_file() for prefix in prefixes
    )


def test_every_imported_ros_package_and_system_module_is_declared():
    declared = {element.text for element in ET.parse(REPO / "package.xml").getroot().iter("exec_depend")}
    imported = imported_modules()
    wanted = {name for name in imported if is_ros_package(name)} | {
        key for module, key in SYSTEM_KEYS.items() if module in imported
    }
    assert wanted - declared == set(), "imported but not in package.xml"
    assert declared - wanted - NOT_IMPORTED == set(), "in package.xml but imported nowhere"

"""After `colcon build` (what ROS 2 users run), ament finds everything where it looks: the package
marker in the resource index, launch/ and config/ under share/dinov2_ros, and the executables
under lib/dinov2_ros (what `ros2 run` and `ros2 launch` search)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXECUTABLES = ["perception_node", "synthetic_camera_node", "demo_monitor", "dinov2-ros"]


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        pytest.skip("colcon is not installed in this environment (requirements/dev.txt has it)")
    work = tmp_path_factory.mktemp("colcon")
    source = work / "src" / "dinov2_ros"
    # Build from a copy of the tracked sources, as a fresh clone in a workspace's src/ would be.
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    for name in tracked.stdout.splitlines():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    result = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work / "install"


def test_colcon_discovers_only_dinov2_ros(colcon_install):
    packages = sorted(p.name for p in colcon_install.iterdir() if p.is_dir())
    assert packages == ["dinov2_ros"], "third_party/vision_msgs must stay invisible to colcon (COLCON_IGNORE)"


def test_package_marker_is_in_the_ament_index(colcon_install):
    assert (colcon_install / "dinov2_ros/share/ament_index/resource_index/packages/dinov2_ros").is_file()


def test_launch_and_config_are_under_share(colcon_install):
    share = colcon_install / "dinov2_ros/share/dinov2_ros"
    assert (share / "package.xml").is_file()
    for launch_file in (REPO / "launch").glob("*.launch.py"):
        assert (share / "launch" / launch_file.name).is_file()
    for config_file in (REPO / "config").iterdir():
        assert (share / "config" / config_file.name).is_file()


@pytest.mark.parametrize("name", EXECUTABLES)
def test_executables_are_where_ros2_run_looks(colcon_install, name):
    executable = colcon_install / "dinov2_ros/lib/dinov2_ros" / name
    assert executable.is_file()
    assert executable.stat().st_mode & 0o111, f"{executable} is not executable"
    assert f"'console_scripts', '{name}'" in executable.read_text()

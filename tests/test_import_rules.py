"""Where code runs, held by test: the robot process (ros -> perception -> runtime -> weights) never
imports torch, the PyTorch model, export code, the tools or the CLI (the contracts in .importlinter,
checked by import-linter, which also sees imports inside functions), and importing every one of its
modules on a machine without torch really loads none of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROBOT_PACKAGES = ("ros", "perception", "runtime", "weights")
# the PyTorch backend runs the model in the process by definition; the opener imports it for backend.kind torch only
TORCH_BACKEND = "dinov2_ros.runtime.backends.torch_backend"


@pytest.mark.subprocess
def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed here (requirements/dev.txt has it)")
    result = subprocess.run(
        [str(lint_imports), "--config", str(REPO / ".importlinter")], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


ROBOT_IMPORTS = f"""
import importlib, pkgutil, sys
sys.modules["torch"] = None  # as on a robot without torch: any import of it fails
import dinov2_ros
names = []
for package in {ROBOT_PACKAGES!r}:
    module = importlib.import_module("dinov2_ros." + package)
    names += [m.name for m in pkgutil.walk_packages(module.__path__, module.__name__ + ".")]
for name in names:
    if name != {TORCH_BACKEND!r}:
        importlib.import_module(name)
loaded = sorted(name for name in sys.modules if sys.modules[name] is not None)
print(len(names))
print("\\n".join(loaded))
"""


@pytest.mark.subprocess
def test_the_robot_process_loads_no_torch_model_export_tools_or_cli():
    result = subprocess.run([sys.executable, "-c", ROBOT_IMPORTS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    count, *loaded = result.stdout.split()
    assert int(count) > 40, "every module of the robot's packages was imported"
    assert "dinov2_ros.ros.perception_node" in loaded
    forbidden = ("torch", "dinov2_ros.model", "dinov2_ros.export", "dinov2_ros.tools", "dinov2_ros.cli")
    assert [name for name in loaded if name.split(".")[0] == "torch" or name.startswith(forbidden[1:])] == []

"""The node exports a missing graph in a child process (`dinov2-ros export`) with its own settings."""

from __future__ import annotations

import re

import onnx
import pytest
import rclpy.logging
from node_harness import model_parameters, settings_for

from dinov2_ros.cli import build_parser
from dinov2_ros.cli.model_options import settings_from_args
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.export_process import ChildExporter


def test_the_export_command_carries_every_setting_of_the_node(graph_dir):
    source = BackendOpener(settings_for(model_parameters(graph_dir)))
    command = source.build_command(120, 160)
    assert command[1:5] == ["-m", "dinov2_ros.cli", "--log-levels", "export"] and command[-2:] == [
        "--camera",
        "160x120",
    ]
    args = build_parser().parse_args(command[3:])
    assert settings_from_args(args) == source.settings
    assert args.camera == [(120, 160)]


def test_a_stored_graph_needs_no_export_and_a_refused_export_says_why(graph_dir):
    source = BackendOpener(settings_for(model_parameters(graph_dir)))
    assert not source.missing(120, 160)
    assert not ChildExporter(source)(120, 160), "nothing to do: no child process"
    assert source.missing(150, 200)
    # the tiny test encoder is no released variant, so the real exporter refuses it, in one line
    with pytest.raises(ValueError, match=r"the graph for 200x150 frames could not be made: unknown backbone 'tiny'"):
        ChildExporter(source)(150, 200)


def test_the_child_exporters_progress_reaches_the_log_line_by_line(small_vits14_settings, capfd):
    """A real vits14 export (random weights, small input) in the child: its steps come as they happen."""
    source = BackendOpener(small_vits14_settings)
    lines: list[str] = []
    assert ChildExporter(source, progress=lines.append)(84, 112)
    assert not source.missing(84, 112)
    steps = [line for line in lines if re.search(r"export \d/\d", line)]
    assert [re.search(r"export (\d)/6", line).group(1) for line in steps] == ["1", "2", "3", "4", "5", "6"], lines
    assert all(line.startswith("graph for 112x84 frames: ") for line in lines)
    # another size: the child composes the stored core with that camera's ends, no second export
    lines.clear()
    assert ChildExporter(source, progress=lines.append)(84, 140)
    assert not source.missing(84, 140)
    assert any("the stored core" in line for line in lines) and not any("export 1/6" in line for line in lines), lines
    assert [line for line in lines if re.search(r"export 6/6: .*composed and checked", line)], lines
    # a core damaged on disk is noticed (its digest), deleted and exported again
    (core,) = source.store.core_dir.glob("*.onnx")
    damaged = onnx.load(core)
    weights = max(damaged.graph.initializer, key=lambda tensor: len(tensor.raw_data))
    weights.raw_data = bytes(len(weights.raw_data))
    onnx.save(damaged, core)
    # the node's own rclpy logger, which refuses a call site that changes severity: the warning
    # reaches it as a warning, the new export's steps as info
    logger = rclpy.logging.get_logger("graph_export_test")
    capfd.readouterr()
    assert ChildExporter(source, progress=logger.info, warn=logger.warning)(84, 168)
    log = capfd.readouterr().err.splitlines()
    assert [line for line in log if "[WARN]" in line and "is damaged" in line and "exporting it again" in line], log
    assert [line for line in log if "[INFO]" in line and "graph for 168x84 frames: export 1/6" in line], log
    assert not [line for line in log if "artifact store: skipping" in line], "the node logs its own lookups"
    assert not source.missing(84, 168)

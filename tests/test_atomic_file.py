"""atomic_write: the file appears whole or not at all, and a failed write leaves the old one."""

from __future__ import annotations

import pytest

from dinov2_ros.atomic_file import atomic_write


def test_the_file_appears_whole_and_a_failed_write_keeps_the_old_one(tmp_path):
    target = tmp_path / "new_dir" / "classes.npz"
    with atomic_write(target) as temporary:
        temporary.write_bytes(b"first")
        assert not target.exists(), "nothing at the path until the write is done"
    assert target.read_bytes() == b"first"

    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["classes.npz"], "the temporary file is removed"


def test_the_file_gets_the_permissions_of_a_plainly_created_file(tmp_path):
    """Not mkstemp's 0600: a graph store copied to a robot must be readable by the node's user."""
    import os

    previous = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "graph.onnx") as temporary:
            temporary.write_bytes(b"graph")
        (tmp_path / "plain").write_bytes(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "graph.onnx").stat().st_mode & 0o777 == 0o644 == (tmp_path / "plain").stat().st_mode & 0o777


def test_a_folder_write_moves_the_companions_first_and_a_failed_one_leaves_nothing(tmp_path):
    from dinov2_ros.atomic_file import atomic_write_folder

    target = tmp_path / "graph.onnx"
    with atomic_write_folder(target) as folder:
        (folder / "graph.onnx.data").write_bytes(b"weights")
        (folder / "graph.onnx").write_bytes(b"graph")
        assert not target.exists()
    assert target.read_bytes() == b"graph" and (tmp_path / "graph.onnx.data").read_bytes() == b"weights"
    assert (tmp_path / "graph.onnx").stat().st_mtime_ns >= (tmp_path / "graph.onnx.data").stat().st_mtime_ns

    with pytest.raises(RuntimeError, match="disk full"), atomic_write_folder(target) as folder:
        (folder / "graph.onnx.data").write_bytes(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(FileNotFoundError, match=r"nothing was written as graph\.onnx"), atomic_write_folder(target):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.onnx", "graph.onnx.data"], "no scratch folder left"
    assert (tmp_path / "graph.onnx.data").read_bytes() == b"weights"

"""The frames `dinov2-ros export|build-engine` calibrate TensorRT's int8 graph on (`--calibration`)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dinov2_ros.cli.calibration import calibration_images


def test_a_folder_gives_its_images_in_rgb_and_skips_the_rest(tmp_path, caplog):
    red = np.zeros((30, 40, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk
    cv2.imwrite(str(tmp_path / "b.png"), red)
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((20, 20, 3), 128, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    images = calibration_images(str(tmp_path))
    assert [image.shape for image in images] == [(20, 20, 3), (30, 40, 3)], "sorted by name, sizes kept"
    assert tuple(images[1][0, 0]) == (255, 0, 0), "RGB"
    assert "skipping" in caplog.text and "broken.png" in caplog.text


@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_a_folder_without_images_is_refused_naming_it(tmp_path, kind):
    folder = tmp_path / "frames"
    if kind == "empty":
        folder.mkdir()
    expected = "holds no readable" if kind == "empty" else "is not a folder"
    with pytest.raises(ValueError, match=f"backend.calibration '{folder}' {expected}"):
        calibration_images(str(folder))

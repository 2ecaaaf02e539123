"""The frames TensorRT's int8 graph is calibrated on (`backend.calibration`, `--calibration`): a folder of
the cell's own images, or, where none is given, synthetic tabletop scenes."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

LOG = logging.getLogger(__name__)

SYNTHETIC_FRAMES = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def calibration_images(folder: str) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB frames: every PNG, JPEG or BMP image in `folder` (sorted by name; sizes may
    differ), or SYNTHETIC_FRAMES synthetic scenes for "". ValueError naming the folder when it holds
    no readable image; an unreadable file is skipped with a warning."""
    if not folder:
        from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

        generator = SyntheticSceneGenerator(seed=0)
        return [generator.render(index).image_rgb for index in range(SYNTHETIC_FRAMES)]
    path = Path(folder).expanduser()
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else []
    images = []
    for file in files:
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            LOG.warning("calibration: skipping %s: OpenCV cannot read it as an image", file)
            continue
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if not images:
        found = "is not a folder" if not path.is_dir() else f"holds no readable {'/'.join(IMAGE_SUFFIXES)} image"
        raise ValueError(
            f"backend.calibration {folder!r} {found}: give a folder of the cell's own frames (a few dozen, as "
            "the camera sees the parts), or '' for synthetic scenes"
        )
    LOG.info("calibration: %d frames from %s", len(images), path)
    return images

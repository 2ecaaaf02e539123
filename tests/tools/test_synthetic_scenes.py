import numpy as np
import pytest

from dinov2_ros.tools.scenes.synthetic_scenes import PART_CATALOG, SyntheticSceneGenerator, write_coco_dataset
from dinov2_ros.tools.training.detector_dataset import load_coco


def test_same_seed_and_index_give_the_same_scene():
    first = SyntheticSceneGenerator(3, 160, 120).render(7)
    second = SyntheticSceneGenerator(3, 160, 120).render(7)
    other = SyntheticSceneGenerator(3, 160, 120).render(8)
    np.testing.assert_array_equal(first.image_rgb, second.image_rgb)
    np.testing.assert_array_equal(first.depth, second.depth)  # NaN holes in the same places
    np.testing.assert_array_equal(first.boxes, second.boxes)
    assert not np.array_equal(first.image_rgb, other.image_rgb)


@pytest.mark.parametrize("size", [(640, 480), (224, 224)])
def test_ground_truth_is_consistent_with_the_rendering(size):
    width, height = size
    generator = SyntheticSceneGenerator(0, width, height, depth_noise=False)
    for index in range(10):
        scene = generator.render(index)
        assert scene.image_rgb.shape == (height, width, 3) and scene.image_rgb.dtype == np.uint8
        assert scene.depth.shape == (height, width) and scene.depth.dtype == np.float32
        assert 1 <= len(scene.boxes) <= 4
        assert not (scene.masks.sum(axis=0) > 1).any(), "parts must not overlap"
        fx, cx, cy = scene.K[0, 0], scene.K[0, 2], scene.K[1, 2]
        for box, mask, centre, size_3d in zip(scene.boxes, scene.masks, scene.centers_3d, scene.sizes_3d, strict=True):
            rows, cols = np.nonzero(mask)
            np.testing.assert_array_equal(box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            np.testing.assert_allclose(scene.depth[mask], centre[2], atol=1e-6)  # flat face at the centre's z
            assert centre[2] < np.nanmax(scene.depth), "parts stand in front of the table"
            np.testing.assert_allclose(size_3d[0], (box[2] - box[0]) * centre[2] / fx)
            np.testing.assert_allclose(centre[0], ((box[0] + box[2] - 1) / 2 - cx) * centre[2] / fx)
            np.testing.assert_allclose(centre[1], ((box[1] + box[3] - 1) / 2 - cy) * centre[2] / scene.K[1, 1])
        assert set(scene.class_ids) <= set(range(len(PART_CATALOG)))


def test_depth_noise_keeps_parts_within_millimetres_and_marks_holes_nan():
    scene = SyntheticSceneGenerator(1, 320, 240).render(0)
    holes = np.isnan(scene.depth)
    assert 0.002 < holes.mean() < 0.05
    for mask, centre in zip(scene.masks, scene.centers_3d, strict=True):
        valid = mask & ~holes
        assert np.abs(scene.depth[valid] - centre[2]).max() < 0.01


def test_unknown_class_names_are_refused_with_the_catalog():
    with pytest.raises(ValueError, match=r"unknown part classes.*choose from"):
        SyntheticSceneGenerator(0, classes=("block", "gear"))


def test_a_coco_export_reads_back_with_the_same_boxes(tmp_path):
    generator = SyntheticSceneGenerator(2, 112, 112, classes=("block", "ring"))
    dataset = load_coco(write_coco_dataset(generator, [4, 5], tmp_path))
    assert dataset.class_names == ("block", "ring")
    for image, index in zip(dataset.images, [4, 5], strict=True):
        scene = generator.render(index)
        annotations = dataset.annotations_by_image[image["id"]]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)]
        np.testing.assert_array_equal(boxes, scene.boxes)
        np.testing.assert_array_equal(dataset.read_image(image), scene.image_rgb)
        assert [a["category_id"] - 1 for a in annotations] == scene.class_ids.tolist()

import numpy as np
import pytest

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.depth import depth_to_metres
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def scenes():
    generator = SyntheticSceneGenerator(5, WIDTH, HEIGHT)  # with depth noise, NaN holes, flying pixels
    camera = PinholeCameraModel(generator.K, np.zeros(5), WIDTH, HEIGHT)
    return camera, [generator.render(index) for index in range(25)]


# Tolerances. With the part's mask: the centre within 3 mm, the face's width and height within 3 % and
# its spread along z (truly 0) under 1.5 cm: the masks are exact, what remains is depth noise of
# 1 mm x z^2 (its extremes over ~2000 pixels reach +-4.5 sigma). With only the box, up to half the box
# is table (a wedge is a triangle, a ring has a hole); the depth-outlier rejection keeps a band of at
# least +-1 cm around the part's median depth: 15 mm, 8 % and 4 cm. Measured over 100 scenes at 320x240
# and 640x480: 1.7 mm / 2.1 % / 1.2 cm with masks, 11 mm / 6.6 % / 3.1 cm with boxes.
@pytest.mark.parametrize(
    ("use_masks", "centre_tolerance", "size_tolerance", "max_z_spread"),
    [(True, 0.003, 0.03, 0.015), (False, 0.015, 0.08, 0.04)],
)
def test_centres_and_sizes_match_the_ground_truth(scenes, use_masks, centre_tolerance, size_tolerance, max_z_spread):
    camera, rendered = scenes
    lifter = ObjectLifter()
    count = 0
    for scene in rendered:
        lifted = lifter.lift(scene.depth, camera, scene.boxes, scene.masks if use_masks else None)
        for obj, centre, size in zip(lifted, scene.centers_3d, scene.sizes_3d, strict=True):
            assert obj.has_pose and obj.reason == ""
            np.testing.assert_allclose(obj.center, centre, atol=centre_tolerance)
            np.testing.assert_allclose(obj.size[:2], size[:2], rtol=size_tolerance)
            assert obj.size[2] < max_z_spread
            assert obj.orientation_xyzw == (0.0, 0.0, 0.0, 1.0)
            count += 1
    assert count >= 40


def test_a_pinhole_camera_gives_the_objects_of_the_general_undistorting_path(scenes):
    """Without distortion the lifter reduces each crop per row and column; with it, it undistorts every
    pixel. A distortion too small to move a pixel must give the same objects either way."""
    camera, rendered = scenes
    barely_distorted = PinholeCameraModel(camera.K, np.array([1e-12, 0.0, 0.0, 0.0, 0.0]), WIDTH, HEIGHT)
    assert not camera.has_distortion and barely_distorted.has_distortion
    for scene in rendered[:5]:
        for masks in (scene.masks, None):
            fast = ObjectLifter().lift(scene.depth, camera, scene.boxes, masks)
            general = ObjectLifter().lift(scene.depth, barely_distorted, scene.boxes, masks)
            for a, b in zip(fast, general, strict=True):
                np.testing.assert_allclose(a.center, b.center, atol=1e-9)
                np.testing.assert_allclose(a.size, b.size, atol=1e-9)
                assert a.inlier_count == b.inlier_count


def test_millimetre_depth_gives_the_same_objects_as_metres(scenes):
    camera, rendered = scenes
    scene = rendered[0]
    millimetres = np.nan_to_num(scene.depth * 1000).round().astype(np.uint16)  # NaN -> 0, REP 118's "no return"
    in_metres = ObjectLifter().lift(scene.depth, camera, scene.boxes, scene.masks)
    from_mm = ObjectLifter().lift(depth_to_metres(millimetres, "16UC1"), camera, scene.boxes, scene.masks)
    for a, b in zip(in_metres, from_mm, strict=True):
        np.testing.assert_allclose(a.center, b.center, atol=0.001)


def _camera_or_none(k):
    """What a node does with CameraInfo: a camera model, or none when the intrinsics are invalid."""
    try:
        return PinholeCameraModel.from_camera_info(k, [0.0] * 5, [0.0] * 12, WIDTH, HEIGHT)
    except ValueError:
        return None


K = [260.0, 0.0, 159.5, 0.0, 260.0, 119.5, 0.0, 0.0, 1.0]
INVALID = {
    "all NaN 32FC1": (np.full((HEIGHT, WIDTH), np.nan, np.float32), "32FC1", K, "valid depth pixels"),
    "all zero 32FC1": (np.zeros((HEIGHT, WIDTH), np.float32), "32FC1", K, "valid depth pixels"),
    "all zero 16UC1": (np.zeros((HEIGHT, WIDTH), np.uint16), "16UC1", K, "valid depth pixels"),
    "negative and inf 32FC1": (
        np.where(np.eye(HEIGHT, WIDTH) > 0, np.inf, -1.0).astype(np.float32),
        "32FC1",
        K,
        "valid",
    ),
    "missing depth": (None, "32FC1", K, "no depth image"),
    "zero intrinsics": (np.ones((HEIGHT, WIDTH), np.float32), "32FC1", [0.0] * 9, "no valid camera intrinsics"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_depth_or_intrinsics_give_no_pose_and_say_why(case):
    depth, encoding, k, reason = INVALID[case]
    metres = None if depth is None else depth_to_metres(depth, encoding)
    boxes = np.array([[100.0, 80.0, 160.0, 140.0], [0.0, 0.0, 320.0, 240.0]])
    for obj in ObjectLifter().lift(metres, _camera_or_none(k), boxes):
        assert not obj.has_pose
        assert obj.center is None and obj.size is None
        assert reason in obj.reason


def test_a_part_with_few_valid_depth_pixels_gets_no_pose():
    depth = np.full((HEIGHT, WIDTH), np.nan, np.float32)
    depth[100:103, 100:105] = 0.8  # 15 pixels, below the default 20
    (obj,) = ObjectLifter().lift(depth, _camera_or_none(K), np.array([[90.0, 90.0, 120.0, 120.0]]))
    assert not obj.has_pose and obj.reason == "only 15 valid depth pixels inside the detection (need 20)"


@pytest.mark.parametrize(
    ("depth", "encoding", "message"),
    [
        (np.zeros((4, 4), np.float32), "16UC1", "16UC1 depth must be a 2D uint16 array, got float32"),
        (np.zeros((4, 4), np.uint16), "32FC1", "32FC1 depth must be a 2D float32 array"),
        (np.zeros((4, 4), np.uint16), "mono16", "'mono16' is not supported; publish 32FC1 or 16UC1"),
    ],
)
def test_depth_of_the_wrong_type_is_refused(depth, encoding, message):
    with pytest.raises(ValueError, match=message):
        depth_to_metres(depth, encoding)


def test_depth_not_aligned_with_the_camera_is_refused():
    with pytest.raises(ValueError, match="depth image is 160x120 but CameraInfo says 320x240"):
        ObjectLifter().lift(np.ones((120, 160), np.float32), _camera_or_none(K), np.zeros((1, 4)))


@pytest.mark.parametrize("count", [1, 2, 3, 100, 101, 2048])
def test_fast_median_is_numpys_median(count):
    from dinov2_ros.perception.object_lifting import fast_median

    values = np.random.default_rng(count).normal(1.0, 0.2, count)
    assert fast_median(values) == float(np.median(values))

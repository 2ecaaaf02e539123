import numpy as np
import pytest

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.object_lifting import ObjectLifter

K = [520.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
P = [500.0, 0.0, 320.0, 0.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
DISTORTIONS = {
    "none": ("plumb_bob", [0.0] * 5),
    "plumb_bob": ("plumb_bob", [-0.12, 0.05, 0.001, -0.0015, 0.0]),
    "rational_polynomial": ("rational_polynomial", [0.1, -0.05, 0.0, 0.001, 0.0, 0.05, -0.01, 0.0]),
    "equidistant": ("equidistant", [0.05, -0.01, 0.002, 0.0]),
}


def camera(distortion: str = "none") -> PinholeCameraModel:
    model, d = DISTORTIONS[distortion]
    return PinholeCameraModel.from_camera_info(K, d, P, 640, 480, model)


@pytest.mark.parametrize("distortion", list(DISTORTIONS))
def test_pixels_back_project_and_project_to_themselves(distortion):
    model = camera(distortion)
    uv = np.array([[0.0, 0.0], [319.5, 239.5], [600.0, 50.0], [100.0, 400.0]])
    z = np.array([0.5, 1.0, 2.0, 3.5])
    points = model.back_project(uv, z)
    np.testing.assert_allclose(points[:, 2], z)
    np.testing.assert_allclose(model.project_3d_to_pixel(points), uv, atol=1e-3)
    rays = model.project_pixel_to_3d_ray(uv)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0)
    np.testing.assert_allclose(rays, points / np.linalg.norm(points, axis=1, keepdims=True), atol=1e-9)


@pytest.mark.parametrize("distortion", list(DISTORTIONS))
def test_whole_pixels_back_project_to_the_points_any_pixel_does(distortion):
    model = camera(distortion)
    rng = np.random.default_rng(0)
    columns, rows, z = rng.integers(0, 640, 500), rng.integers(0, 480, 500), rng.uniform(0.3, 4.0, 500)
    expected = model.back_project(np.column_stack([columns, rows]).astype(np.float64), z)
    # the distorted cameras' table is float32: within a micrometre at 4 m
    np.testing.assert_allclose(model.back_project_pixels(columns, rows, z), expected, rtol=0, atol=1e-6)


def test_a_calibration_undistorts_its_pixels_once_for_all_its_frames():
    first, next_frame = camera("plumb_bob"), camera("plumb_bob")
    grid = first.normalized_pixel_grid()
    assert grid.shape == (2, 480, 640)
    assert next_frame.normalized_pixel_grid() is grid
    assert not grid.flags.writeable
    assert camera("rational_polynomial").normalized_pixel_grid() is not grid


def test_the_principal_point_looks_along_the_optical_axis():
    np.testing.assert_allclose(camera().project_pixel_to_3d_ray(np.array([319.5, 239.5])), [0, 0, 1])
    np.testing.assert_allclose(camera().project_3d_to_pixel(np.array([0.26, 0.0, 1.0])), [319.5 + 135.2, 239.5])


def test_rectified_pixels_use_p_and_no_distortion():
    model = PinholeCameraModel.from_camera_info(K, DISTORTIONS["plumb_bob"][1], P, 640, 480, rectified=True)
    assert (model.fx, model.fy, model.cx, model.cy) == (500.0, 500.0, 320.0, 240.0)
    assert not model.D.any()


@pytest.mark.parametrize(
    ("k", "d", "p", "size", "model", "rectified", "message"),
    [
        ([0.0] * 9, [], P, (640, 480), "plumb_bob", False, "K is all zeros: the camera is not calibrated"),
        ([0.0, 0, 320, 0, 500, 240, 0, 0, 1], [], P, (640, 480), "plumb_bob", False, "focal lengths must be positive"),
        ([np.nan, *K[1:]], [], P, (640, 480), "plumb_bob", False, "NaN or infinity"),
        (K[:6], [], P, (640, 480), "plumb_bob", False, "k must have 9 values"),
        (K, [], P, (0, 480), "plumb_bob", False, "image size must be positive"),
        (K, [0.1, 0, 0, 0, 0], P, (640, 480), "fisheye62", False, "unsupported distortion model 'fisheye62'"),
        (K, [0.1, 0, 0, 0, 0], P, (640, 480), "equidistant", False, "needs 4 coefficients"),
        (K, [0.1, 0, 0], P, (640, 480), "plumb_bob", False, "plumb_bob model takes 4, 5, 8, 12, 14 .* got 3"),
        (K, [0.1], P, (640, 480), "rational_polynomial", False, "rational_polynomial model takes .* got 1"),
        (K, [], [0.0] * 12, (640, 480), "plumb_bob", True, "P is all zeros"),
    ],
)
def test_missing_or_invalid_intrinsics_are_refused_with_the_fix(k, d, p, size, model, rectified, message):
    with pytest.raises(ValueError, match=message):
        PinholeCameraModel.from_camera_info(k, d, p, *size, model, rectified=rectified)


def test_points_behind_the_camera_do_not_project():
    with pytest.raises(ValueError, match="in front of the camera"):
        camera().project_3d_to_pixel(np.array([0.0, 0.0, -1.0]))


@pytest.mark.parametrize("rectified", [False, True])
def test_a_binned_camera_sees_the_same_rays_as_the_full_resolution_camera(rectified):
    """REP 104: K and P are for the full sensor; binning 2x2 halves fx, fy, cx, cy (image_geometry)."""
    d = DISTORTIONS["plumb_bob"][1]
    full = PinholeCameraModel.from_camera_info(K, d, P, 640, 480, rectified=rectified)
    binned = PinholeCameraModel.from_camera_info(K, d, P, 640, 480, rectified=rectified, binning=(2, 2))
    assert (binned.width, binned.height) == (320, 240)
    assert (binned.fx, binned.fy, binned.cx, binned.cy) == (full.fx / 2, full.fy / 2, full.cx / 2, full.cy / 2)
    if not rectified:  # distortion applies to normalised coordinates: the same for both
        binned_uv = np.array([[10.0, 20.0], [160.0, 120.0], [300.0, 230.0]])
        np.testing.assert_allclose(
            binned.normalized_coordinates(binned_uv), full.normalized_coordinates(binned_uv * 2), atol=1e-9
        )
    assert (full.width, full.height) == (640, 480)
    zero_means_one = PinholeCameraModel.from_camera_info(K, d, P, 640, 480, binning=(0, 0))
    np.testing.assert_array_equal(zero_means_one.K, camera("plumb_bob").K)


def test_a_roi_crop_moves_the_principal_point_and_sees_the_same_points():
    crop = PinholeCameraModel.from_camera_info(K, [], P, 640, 480, roi=(100, 60, 320, 240))
    assert (crop.width, crop.height) == (320, 240)
    assert (crop.cx, crop.cy) == (K[2] - 100, K[5] - 60)
    points = np.array([[0.1, -0.05, 1.0], [-0.2, 0.1, 2.0]])
    np.testing.assert_allclose(crop.project_3d_to_pixel(points), camera().project_3d_to_pixel(points) - (100, 60))
    binned_crop = PinholeCameraModel.from_camera_info(K, [], P, 640, 480, binning=(2, 2), roi=(100, 60, 320, 240))
    assert (binned_crop.width, binned_crop.height) == (160, 120)
    np.testing.assert_allclose(binned_crop.project_3d_to_pixel(points), crop.project_3d_to_pixel(points) / 2)


def test_a_roi_outside_the_sensor_is_refused():
    with pytest.raises(ValueError, match="does not lie inside the 640x480 sensor"):
        PinholeCameraModel.from_camera_info(K, [], P, 640, 480, roi=(400, 0, 320, 240))


def test_the_corners_of_a_strong_lens_are_undistorted_exactly():
    """OpenCV's iteration stops 3.6 px off at a 1280x800 corner of k1 = -0.3 after 20 steps (the
    fixed point converges slowly there): the table holds the exact inverse, here at half that size."""
    model = PinholeCameraModel(
        np.array([[300.0, 0, 320], [0, 300.0, 200], [0, 0, 1]]), np.array([-0.3, 0.1, 0, 0, 0]), 640, 400
    )
    x_plane, y_plane = model.normalized_pixel_grid()
    rows, columns = np.mgrid[0:400, 0:640]
    points = np.column_stack([x_plane.ravel(), y_plane.ravel(), np.ones(x_plane.size)])
    back = model.project_3d_to_pixel(points.astype(np.float64))
    error = np.hypot(back[:, 0] - columns.ravel(), back[:, 1] - rows.ravel())
    assert error.max() < 0.01, f"{np.count_nonzero(error > 0.01)} pixels off by up to {error.max():.2f} px"


def test_pixels_where_the_lens_model_has_no_inverse_are_nan_and_warned_once(caplog):
    """A rational_polynomial fit whose distortion folds back before the corners (r(1 - 0.6 r^2) peaks
    at r = 0.75): those pixels have no undistorted coordinates, so they never become 3D points."""
    k = np.array([[200.0, 0, 160], [0, 200.0, 120], [0, 0, 1]])
    model = PinholeCameraModel(k, np.array([-0.6, 0, 0, 0, 0, 0, 0, 0]), 320, 240, "rational_polynomial")
    with caplog.at_level("WARNING", logger="dinov2_ros"):
        grid = model.normalized_pixel_grid()
        PinholeCameraModel(k, model.D, 320, 240, "rational_polynomial").normalized_pixel_grid()
    assert np.isnan(grid[:, 0, 0]).all() and np.isnan(grid[:, -1, -1]).all(), "the corners have no inverse"
    assert np.isfinite(grid[:, 120, 160]).all() and np.isfinite(grid[:, 120, 100]).all()
    assert np.isnan(grid[0]).sum() == np.isnan(grid[1]).sum() > 0
    assert caplog.text.count("cannot be inverted at") == 1, "once per calibration"
    assert np.isnan(model.normalized_coordinates(np.array([[0.0, 0.0]]))).all()
    # no 3D point from such a pixel, and the detection there gets no made-up box
    points = model.back_project_pixels(np.array([0, 160]), np.array([0, 120]), np.array([1.0, 1.0]))
    assert np.isnan(points[0, :2]).all() and np.isfinite(points[1]).all()
    depth = np.full((240, 320), 1.0, np.float32)
    (corner,) = ObjectLifter().lift(depth, model, np.array([[0, 0, 20, 20]]))
    assert corner.center is None and "has an inverse" in corner.reason
    (centre,) = ObjectLifter().lift(depth, model, np.array([[150, 110, 170, 130]]))
    assert np.isfinite(centre.center).all()

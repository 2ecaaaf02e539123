import numpy as np
import pytest

from dinov2_ros.perception.camera_model import PinholeCameraModel

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
        (K, [], [0.0] * 12, (640, 480), "plumb_bob", True, "P is all zeros"),
    ],
)
def test_missing_or_invalid_intrinsics_are_refused_with_the_fix(k, d, p, size, model, rectified, message):
    with pytest.raises(ValueError, match=message):
        PinholeCameraModel.from_camera_info(k, d, p, *size, model, rectified=rectified)


def test_points_behind_the_camera_do_not_project():
    with pytest.raises(ValueError, match="in front of the camera"):
        camera().project_3d_to_pixel(np.array([0.0, 0.0, -1.0]))

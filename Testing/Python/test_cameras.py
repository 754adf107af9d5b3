"""Camera records agree with VTK's own camera projection and round-trip through cameras.json."""
from __future__ import annotations

import numpy as np
import pytest
import vtk

from vfmlab.cameras import CameraRecord, CaptureSet


def vtk_pixel(record: CameraRecord, point) -> np.ndarray:
    """Where VTK's camera maps a world point, as (x, y) from the top-left."""
    camera = vtk.vtkCamera()
    camera.SetPosition(record.position)
    camera.SetFocalPoint(record.focal_point)
    camera.SetViewUp(record.view_up)
    camera.SetViewAngle(record.view_angle)
    camera.SetParallelProjection(record.parallel_projection)
    camera.SetParallelScale(record.parallel_scale)
    camera.SetClippingRange(0.1, 10000)
    m = camera.GetCompositeProjectionTransformMatrix(record.width / record.height, -1, 1)
    h = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)]) @ np.append(point, 1.0)
    ndc = h[:3] / h[3]
    return np.array([(ndc[0] + 1) * record.width / 2, (1 - ndc[1]) * record.height / 2])


@pytest.mark.parametrize("parallel", [False, True])
def test_projection_matches_vtk(parallel):
    record = CameraRecord("v.png", (120.0, -340.0, 80.0), (5.0, 10.0, -20.0), (0.1, 0.2, 1.0),
                          view_angle=35.0, parallel_projection=parallel, parallel_scale=90.0, width=320, height=200)
    rng = np.random.default_rng(0)
    points = rng.uniform(-60, 60, (20, 3))
    ours = record.project(points)
    theirs = np.array([vtk_pixel(record, p) for p in points])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("parallel", [False, True])
def test_rays_pass_through_the_projected_pixel(parallel):
    record = CameraRecord("v.png", (0.0, -500.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0),
                          parallel_projection=parallel, parallel_scale=100.0, width=64, height=48)
    origins, directions = record.rays()
    assert origins.shape == directions.shape == (48, 64, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1.0)
    # a point along pixel (x=10, y=7)'s ray projects back to that pixel's centre
    point = origins[7, 10] + 300.0 * directions[7, 10]
    np.testing.assert_allclose(record.project(point)[0], [10.5, 7.5], atol=1e-9)
    # RAS superior (+S) is up in the image: a higher point has a smaller y
    assert record.project([0, 0, 50])[0, 1] < record.project([0, 0, -50])[0, 1]


def test_capture_set_round_trip(tmp_path):
    views = [CameraRecord(f"view_{n:03d}.png", (n, 2.0, 3.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)) for n in range(3)]
    capture = CaptureSet(views, volume_path="/data/ct.nrrd", volume_sha256="ab" * 32,
                         transfer_function={"preset": "CT-AAA", "shift": 0.0}, sample_distance=0.5)
    capture.save(tmp_path)
    back = CaptureSet.load(tmp_path)
    assert back == capture
    (tmp_path / "cameras.json").write_text("{not json")
    with pytest.raises(Exception, match="not a valid camera record"):
        CaptureSet.load(tmp_path)

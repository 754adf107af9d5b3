"""Camera poses for captures: orbits around a volume, and :class:`CameraRecord` ⇄ ``vtkCamera``.

Orbit convention: azimuth 0 looks at the patient from the front (camera on +A, looking towards −A,
superior up, patient's right on the image's left — Slicer's "Anterior" view); azimuth grows towards
the patient's right (+R at 90°); elevation lifts the camera towards superior.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cameras import CameraRecord
from ..errors import InputError
from ..volume import Volume


@dataclass(frozen=True)
class Orbit:
    """``views`` cameras evenly spaced in azimuth, all at one elevation and distance, framing the volume's box."""

    views: int = 8
    elevation: float = 0.0  # degrees
    azimuth_start: float = 0.0  # degrees
    view_angle: float = 30.0  # vertical field of view, degrees (Slicer's default)
    margin: float = 1.05  # >1 leaves room around the volume's box

    def __post_init__(self) -> None:
        if self.views < 1:
            raise InputError(f"at least one view is needed, got {self.views}")
        if not -89.0 <= self.elevation <= 89.0:
            raise InputError(f"elevation must be within ±89°, got {self.elevation}")
        if not 1.0 <= self.view_angle <= 120.0:
            raise InputError(f"view angle must be 1°..120°, got {self.view_angle}")


def volume_corners_ras(volume: Volume) -> np.ndarray:
    """``(8, 3)`` RAS corners of the box spanned by the voxel centres (what a ray caster renders)."""
    i, j, k = (n - 1 for n in volume.shape_ijk)
    corners = np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], float)
    return volume.ijk_to_ras_points(corners)


def bounding_sphere(volume: Volume) -> tuple[np.ndarray, float]:
    """Centre (RAS) and radius (mm) of the sphere through the volume's corners."""
    corners = volume_corners_ras(volume)
    centre = corners.mean(axis=0)
    return centre, float(np.linalg.norm(corners - centre, axis=1).max())


def _orbit_directions(orbit: Orbit) -> list[np.ndarray]:
    elevation = np.radians(orbit.elevation)
    azimuths = np.radians(orbit.azimuth_start + 360.0 * np.arange(orbit.views) / orbit.views)
    return [np.array([np.sin(a) * np.cos(elevation), np.cos(a) * np.cos(elevation), np.sin(elevation)])
            for a in azimuths]


def _fitting_distance(corners: np.ndarray, centre: np.ndarray, towards_camera: np.ndarray,
                      tan_half: tuple[float, float]) -> float:
    """Smallest camera distance from ``centre`` at which every corner projects inside the image."""
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(-towards_camera, up)
    right /= np.linalg.norm(right)
    up = np.cross(right, -towards_camera)
    offsets = corners - centre
    depth_shift = offsets @ towards_camera  # how much closer to the camera each corner is than the centre
    needed = np.maximum(np.abs(offsets @ right) / tan_half[0], np.abs(offsets @ up) / tan_half[1])
    return float(np.max(depth_shift + needed))


def orbit_records(volume: Volume, orbit: Orbit, width: int, height: int,
                  image_name: str = "view_{index:03d}.png") -> list[CameraRecord]:
    """Camera records of ``orbit`` around ``volume``'s centre; images named by ``image_name.format(index=n)``.

    All views share one distance: the smallest at which the volume's box fits every view, times ``margin``.
    """
    corners = volume_corners_ras(volume)
    centre, radius = bounding_sphere(volume)
    tan_vertical = np.tan(np.radians(orbit.view_angle) / 2)
    tan_half = (tan_vertical * width / height, tan_vertical)
    directions = _orbit_directions(orbit)
    distance = orbit.margin * max(max(_fitting_distance(corners, centre, d, tan_half) for d in directions),
                                  1.01 * max(radius, 1e-3))  # the camera stays outside the volume
    return [
        CameraRecord(
            image=image_name.format(index=index),
            position=tuple(float(v) for v in centre + distance * direction),
            focal_point=tuple(float(v) for v in centre),
            view_up=(0.0, 0.0, 1.0),
            view_angle=orbit.view_angle,
            width=width,
            height=height,
        )
        for index, direction in enumerate(directions)
    ]


def apply_camera_record(camera, record: CameraRecord) -> None:
    """Set a ``vtkCamera`` to ``record``'s pose and projection (the view-up is orthogonalised by VTK)."""
    camera.SetPosition(record.position)
    camera.SetFocalPoint(record.focal_point)
    camera.SetViewUp(record.view_up)
    camera.SetViewAngle(record.view_angle)
    camera.SetUseHorizontalViewAngle(False)
    camera.SetParallelProjection(record.parallel_projection)
    camera.SetParallelScale(record.parallel_scale)
    camera.OrthogonalizeViewUp()


def record_from_camera(camera, width: int, height: int, image: str, labels_image: str | None = None) -> CameraRecord:
    """The record of a ``vtkCamera`` (e.g. the user's current 3D view) for an image of ``width`` x ``height``."""
    if camera.GetUseHorizontalViewAngle():
        raise InputError("cameras with a horizontal view angle are not supported; records store the vertical one")
    return CameraRecord(
        image=image,
        position=tuple(float(v) for v in camera.GetPosition()),
        focal_point=tuple(float(v) for v in camera.GetFocalPoint()),
        view_up=tuple(float(v) for v in camera.GetViewUp()),
        view_angle=float(camera.GetViewAngle()),
        parallel_projection=bool(camera.GetParallelProjection()),
        parallel_scale=float(camera.GetParallelScale()),
        width=int(width),
        height=int(height),
        labels_image=labels_image,
    )

"""Camera records of captured 3D views: enough to re-cast every pixel's ray and to project RAS points.

Conventions (shared by the Slicer capture, the DeepDVR ray marcher and the probes):
- world coordinates are RAS millimetres, as in Slicer's 3D view;
- the camera follows VTK: ``view_angle`` is the vertical field of view in degrees, ``parallel_scale``
  is half the view height in mm for parallel projection;
- pixels are indexed ``(x, y)`` from the TOP-left corner of the saved image (PNG order), pixel
  centres at ``+0.5``; VTK's frame buffer is bottom-up and is flipped when saved.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_json
from .errors import InputError

CAMERAS_FILE = "cameras.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CameraRecord:
    """One captured view: camera pose, projection and image size."""

    image: str  # file name of the capture, relative to the cameras.json folder
    position: tuple[float, float, float]
    focal_point: tuple[float, float, float]
    view_up: tuple[float, float, float]
    view_angle: float = 30.0
    parallel_projection: bool = False
    parallel_scale: float = 1.0
    width: int = 512
    height: int = 512
    labels_image: str | None = None  # per-pixel segment IDs rendered for the same view, if any

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit ``forward``, ``right`` and ``up`` vectors of the camera in RAS."""
        forward = np.subtract(self.focal_point, self.position).astype(float)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, self.view_up)
        right /= np.linalg.norm(right)
        return forward, right, np.cross(right, forward)

    def _half_extent(self) -> tuple[float, float]:
        """Half width and height of the image plane, at unit distance (perspective) or in mm (parallel)."""
        half_h = self.parallel_scale if self.parallel_projection else np.tan(np.radians(self.view_angle) / 2)
        return half_h * self.width / self.height, half_h

    def rays(self, width: int | None = None, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ray origins and unit directions, each ``(H, W, 3)`` in RAS, for an image of the given size.

        A different size than captured samples the same view at another resolution.
        """
        width, height = width or self.width, height or self.height
        forward, right, up = self.basis()
        half_w, half_h = self._half_extent()
        x = (2 * (np.arange(width) + 0.5) / width - 1) * half_w
        y = (1 - 2 * (np.arange(height) + 0.5) / height) * half_h
        offsets = x[None, :, None] * right + y[:, None, None] * up
        if self.parallel_projection:
            origins = np.asarray(self.position, float) + offsets
            directions = np.broadcast_to(forward, origins.shape).copy()
        else:
            directions = forward + offsets
            directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
            origins = np.broadcast_to(np.asarray(self.position, float), directions.shape).copy()
        return origins, directions

    def project(self, points_ras: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(N, 2)`` as ``(x, y)`` from the top-left of the image, of RAS points ``(N, 3)``."""
        points = np.atleast_2d(np.asarray(points_ras, float)) - np.asarray(self.position, float)
        forward, right, up = self.basis()
        depth = points @ forward
        scale = np.ones_like(depth) if self.parallel_projection else 1.0 / depth
        half_w, half_h = self._half_extent()
        ndc_x = (points @ right) * scale / half_w
        ndc_y = (points @ up) * scale / half_h
        return np.stack([(ndc_x + 1) * self.width / 2, (1 - ndc_y) * self.height / 2], axis=1)


@dataclass
class CaptureSet:
    """A folder of captures: the views plus what was rendered (volume, transfer function, sampling)."""

    views: list[CameraRecord]
    volume_path: str | None = None
    volume_sha256: str | None = None
    ijk_to_ras: list[list[float]] = field(default_factory=lambda: np.eye(4).tolist())
    transfer_function: dict = field(default_factory=dict)  # preset, shift, colour/opacity points, shading
    sample_distance: float | None = None  # mm between ray samples in the renderer
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    renderer: dict = field(default_factory=dict)  # e.g. {"name": "slicer-vtk", "mapper": "cpu"}
    # Segment-ID images (each view's ``labels_image``): {"encoding": ..., "segments": {"<value>": {"name", "color"}}}
    labels: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CAMERAS_FILE
        data = {"schema_version": SCHEMA_VERSION, **asdict(self)}
        return write_json(path, data)

    @classmethod
    def load(cls, folder_or_file: str | Path) -> "CaptureSet":
        path = Path(folder_or_file)
        path = path / CAMERAS_FILE if path.is_dir() else path
        if not path.is_file():
            raise InputError(f"no {CAMERAS_FILE} here; capture views with 'vfmlab render' first", path)
        try:
            data = json.loads(path.read_text())
            data.pop("schema_version", None)
            views = [CameraRecord(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in view.items()})
                     for view in data.pop("views")]
            data["background"] = tuple(data.get("background", (0.0, 0.0, 0.0)))
            return cls(views=views, **data)
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"is not a valid camera record file ({error})", path) from None

"""Key slices section of VFM Volume Lab, without Qt: which slices of a volume a 2D model should look at.

"Find key slices" runs the ``keyslices`` job on the model server (the volume, and a segmentation when one
is chosen, sent to it); its scores, selection and strip come back into the chosen folder. A click on a
key slice moves a slice view onto it (:meth:`KeySlicesLogic.jump`), through its RAS centre, so it lands
on the same anatomy whatever order the file stores its voxels in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from VFMVolumeLabLib.section_logic import SectionLogic

MIRRORED = ("*.csv", "*.json", "*.png", "*.npy")


class KeySlicesLogic(SectionLogic):
    @property
    def is_running(self) -> bool:
        from vfmlab.keyslices.tasks import TASK

        return self.running(TASK)

    def start(self, client, volume_node, out_dir: str | Path, ratio: float, axis: str = "axial",
              mode: str = "diverse", segmentation_node=None, **callbacks):
        """Score and choose key slices on ``client``'s server; results mirrored into ``out_dir``. Returns the
        :class:`JobFollower` (``callbacks``: ``on_progress``, ``on_done``; the result has ``indices``)."""
        from vfmlab import mrml
        from vfmlab.client.jobs import ServerJob, volume_reference
        from vfmlab.errors import InputError
        from vfmlab.keyslices.tasks import TASK, config_from

        if volume_node is None:
            raise InputError("select the volume to find key slices in")
        config = {"ratio": float(ratio), "axis": axis, "mode": mode}
        config_from(config)  # unknown settings are refused here, before anything is sent
        volume = mrml.volume_from_node(volume_node)
        labels = None
        if segmentation_node is not None and segmentation_node.GetSegmentation().GetNumberOfSegments():
            array, _ = mrml.labels_from_segmentation(segmentation_node, volume_node)
            labels = volume_reference(client, volume.with_array(array.astype(np.int16)))
        params = {"volume": volume_reference(client, volume), "labels": labels, "out": "run:.", "config": config}
        return self.follow(TASK, lambda: ServerJob.start(client, TASK, params, out_dir, MIRRORED), **callbacks)

    @staticmethod
    def slice_centre(volume_node, axis: str, index: int) -> np.ndarray:
        """RAS centre of slice ``index`` along ``axis`` (the order the scores and the strip use)."""
        from vfmlab import mrml
        from vfmlab.slices import SliceStack

        volume = mrml.volume_geometry(volume_node)
        stack = SliceStack.of(volume, axis)
        rows, cols = stack.shape[1:]
        kji = stack.slice_to_voxel(np.array([[index, (rows - 1) / 2, (cols - 1) / 2]]))
        return volume.ijk_to_ras_points(kji[:, ::-1])[0]

    @staticmethod
    def next_key_slice(volume_node, axis: str, ras_point, indices: list[int]) -> int:
        """The first key slice past the ``axis`` slice through ``ras_point`` (a view's centre), round the end:
        "Next key slice" goes on from wherever the user scrolled to."""
        from vfmlab import mrml
        from vfmlab.slices import SliceStack

        volume = mrml.volume_geometry(volume_node)
        current = SliceStack.of(volume, axis).slice_through(volume, ras_point)  # a view panned aside counts too
        ordered = sorted(indices)
        return next((index for index in ordered if index > current), ordered[0])

    def jump(self, slice_node, volume_node, axis: str, index: int) -> np.ndarray:
        """Move ``slice_node`` (showing ``axis``) onto key slice ``index``; returns the RAS point it went to."""
        point = self.slice_centre(volume_node, axis, index)
        slice_node.JumpSliceByOffsetting(*point)
        return point


def read_result(out_dir: str | Path) -> Optional[dict]:
    """The ``selection.json`` of a finished search in ``out_dir``, or None."""
    import json

    from vfmlab.keyslices.run import SELECTION_JSON

    path = Path(out_dir) / SELECTION_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

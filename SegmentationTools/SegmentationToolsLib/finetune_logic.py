"""Fine-tuning a segmenter on the user's segments, as a ``segment-finetune`` job on the model server.

The volume and the checked segments (one label value each) are sent to the server; the run's metrics
and summary are mirrored into the run folder chosen here (the checkpoints stay on the server). A
finished run registers the tuned model on the server under the name the user gave, so the server
lists it beside the others and the prompt section can segment with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from VFMVolumeLabLib.section_logic import SectionLogic

FINETUNE = "fine-tuning"
MIRRORED = ("*.json", "*.jsonl", "job.log")


def panel_finetune_config(epochs: int, train_decoder: bool) -> dict:
    """The panel's fine-tuning settings: mini-batches of 4 with a cosine decay, and the learning rate that
    worked for each choice in ``bench/segment_bench.py`` (the whole decoder needs a smaller one)."""
    return {"epochs": epochs, "train_decoder": train_decoder, "batch_size": 4, "cosine_schedule": True,
            "learning_rate": 3e-4 if train_decoder else 3e-3}


class FinetuneLogic(SectionLogic):
    @property
    def is_running(self) -> bool:
        return self.running(FINETUNE)

    def start(self, client, volume_node, segmentation_node, segment_ids: list[str], run_dir: str | Path,
              config: dict, register_as: Optional[str] = None, **callbacks):
        """Send the volume and the segments (label ``n`` = ``segment_ids[n - 1]``) and start fine-tuning;
        returns the :class:`JobFollower` (``callbacks``: ``on_progress``, ``on_done``). Nothing is sent
        when an input is missing or every chosen segment is empty."""
        from vfmlab import mrml
        from vfmlab.client.jobs import ServerJob, volume_reference
        from vfmlab.errors import InputError
        from vfmlab.segment.tasks import FINETUNE_TASK

        if volume_node is None or segmentation_node is None:
            raise InputError("select the volume and the segmentation holding your segments")
        if not segment_ids:
            raise InputError("check at least one segment to train on")
        volume = mrml.volume_from_node(volume_node)
        labels, names = mrml.labels_from_segmentation(segmentation_node, volume_node, segment_ids)
        if not labels.any():
            raise InputError("the checked segments are empty: there is nothing to learn from")
        params = {"volume": volume_reference(client, volume),
                  "labels": volume_reference(client, volume.with_array(labels.astype(np.int16))),
                  "run_dir": "run:training", "config": {**config, "segments": {n: v for v, n in names.items()}},
                  "register_as": register_as}
        return self.follow(FINETUNE, lambda: ServerJob.start(client, FINETUNE_TASK, params, run_dir, MIRRORED),
                           **callbacks)

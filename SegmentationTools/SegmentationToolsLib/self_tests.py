"""End-to-end checks of Segmentation Tools' sections through the model server, on the bundled sample CT
(see :mod:`VFMVolumeLabLib.self_tests`: run by the module's test class in Slicer and by pytest)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from VFMVolumeLabLib.job_follower import ManualTimers
from VFMVolumeLabLib.self_tests import check, follow_to_end


def _sample_with(scene, organ: str):
    """The sample CT, its organ segmentation and ``organ``'s segment id and reference mask."""
    from vfmlab import mrml

    from VFMVolumeLabLib.sample_data_source import load_sample_with_segmentation

    volume_node, segmentation = load_sample_with_segmentation(scene)
    segment_id = {name: sid for sid, name in mrml.segment_names(segmentation).items()}[organ]
    return volume_node, segmentation, segment_id, mrml.segment_mask(segmentation, segment_id, volume_node)


def segment_and_propagate(scene, client) -> dict:
    """A box on the right kidney's largest axial slice, propagated through the volume by LiteMedSAM on the
    server, written as a new segment; Dice against the sample's reference segment."""
    from vfmlab.metrics import dice
    from vfmlab.mrml import segment_mask
    from vfmlab.mrml.markups import SlicePrompt
    from vfmlab.slices import SliceStack

    from SegmentationToolsLib.segment_logic import SegmentSession

    volume_node, segmentation, _, reference = _sample_with(scene, "kidney_right")
    session = SegmentSession(volume_node, client, "litemedsam")
    stack = SliceStack.of(session.volume, "axial")
    kidney = stack.view(reference)
    index = int(np.argmax(kidney.sum(axis=(1, 2))))
    rows, cols = np.nonzero(kidney[index])
    prompt = SlicePrompt("axial", index, (cols.min(), rows.min(), cols.max(), rows.max()), None, None)
    result = session.segment(prompt, segmentation, "kidney (self-test)", propagate=True)
    score = dice(segment_mask(segmentation, result.segment_id, volume_node), reference)
    check(score > 0.7, f"propagated right kidney Dice {score:.3f} (expected > 0.7)")
    session.undo()
    check(segmentation.GetSegmentation().GetSegment(result.segment_id) is None, "undo removes the new segment")
    seeded = seeded_propagation(session, segmentation, kidney, reference)
    return {"dice": score, "slices": result.slices, "seeded_dice": seeded}


def seeded_propagation(session, segmentation, kidney: np.ndarray, reference: np.ndarray) -> float:
    """The same kidney kept as seeds at a quarter and three quarters of its slices (as at key slices),
    propagated together into one segment; its Dice."""
    from vfmlab.metrics import dice
    from vfmlab.mrml import segment_mask
    from vfmlab.mrml.markups import SlicePrompt

    from SegmentationToolsLib.segment_logic import SeedPrompts

    present = np.flatnonzero(kidney.any(axis=(1, 2)))
    seeds = SeedPrompts()
    for index in (int(present[len(present) // 4]), int(present[3 * len(present) // 4])):
        rows, cols = np.nonzero(kidney[index])
        seeds.add(SlicePrompt("axial", index, (cols.min(), rows.min(), cols.max(), rows.max()), None, None))
    first, more = seeds.with_current(None)
    result = session.segment(first, segmentation, "kidney from seeds (self-test)", propagate=True, seeds=more)
    score = dice(segment_mask(segmentation, result.segment_id, session.volume_node), reference)
    check(score > 0.8, f"right kidney from two seeds Dice {score:.3f} (expected > 0.8)")
    session.undo()
    return score


def btvae_predict(scene, client, folder: str | Path) -> dict:
    """Train a small BT-VAE on the liver on the server, predict the volume, add segment and uncertainty."""
    from vfmlab.metrics import dice
    from vfmlab.mrml import segment_mask

    from SegmentationToolsLib.btvae_logic import BTVAELogic, TrainingSettings

    folder = Path(folder)
    volume_node, segmentation, liver_id, liver = _sample_with(scene, "liver")
    timers = ManualTimers()
    logic = BTVAELogic(scene, timer_factory=timers)
    settings = TrainingSettings(image_size=32, pretrain_epochs=1, epochs=4, samples=2)
    state, outcome = follow_to_end(timers, lambda **callbacks: logic.start_training(
        client, volume_node, segmentation, liver_id, folder / "run", settings, threads=1, **callbacks))
    check(state == "finished", f"training {state}: {outcome}")
    state, outcome = follow_to_end(timers, lambda **callbacks: logic.start_prediction(
        client, folder / "run", volume_node, samples=2, **callbacks))
    check(state == "finished", f"prediction {state}: {outcome}")
    nodes = logic.add_prediction(folder / "run", outcome, volume_node, segmentation)
    predicted = segment_mask(segmentation, nodes.segment_id, volume_node)
    check(predicted.any() and nodes.uncertainty_node is not None, "a new segment with its uncertainty volume")
    return {"dice": dice(predicted, liver)}

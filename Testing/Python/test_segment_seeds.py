"""One segment prompted on several slices (e.g. its key slices), propagated together: which seed's walk
fills which slice, how far each walk goes, seeds with empty masks, a cancel, and the same on real CT with
LiteMedSAM's real weights.

The merge rules are checked with a thresholding model on a synthetic cylinder, where the right answer is
exact; the real model shows the rules hold on anatomy.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from vfmlab.errors import InputError
from vfmlab.metrics import overlap_metrics
from vfmlab.segment.propagate import PropagationConfig, box_of, propagate
from vfmlab.segment.intensity import IntensityWindow
from vfmlab.segment.registry import build_segmenter
from vfmlab.segment.seeds import propagate_from_seeds, segment_prompts
from vfmlab.segment.segmenter import ImageEmbedding, MaskPrediction, Prompt
from vfmlab.segment.volume_segmenter import VolumeSegmenter
from vfmlab.volume import Volume
from vfmlab.volume_io import read_labels, read_volume

CYLINDER = (5, 24)  # first and last axial slice of the synthetic organ
KIDNEY_RIGHT = 2


class ThresholdModel:
    """Stands in for a SAM: inside the box, the pixels brighter than half; counts decodes per slice."""

    name = "threshold"

    def __init__(self):
        self.decoded: Counter[int] = Counter()

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        return ImageEmbedding(torch.from_numpy(np.ascontiguousarray(image)), None, image.shape, image.shape)

    def predict(self, embedding: ImageEmbedding, prompt: Prompt) -> MaskPrediction:
        image = embedding.features.numpy()
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        mask = np.zeros(image.shape, bool)
        mask[y0:y1 + 1, x0:x1 + 1] = image[y0:y1 + 1, x0:x1 + 1] > 0.5
        self.decoded[int(round(image[0, 0] * 1000))] += 1  # the slice index, written into its corner pixel
        return MaskPrediction(mask, 0.9, mask.astype(np.float32))


@pytest.fixture
def cylinder():
    """30 axial slices of 40 x 40, a bright disc on slices 5..24; each slice's index in its corners."""
    array = np.zeros((30, 40, 40), np.float32)
    rows, cols = np.mgrid[:40, :40]
    array[CYLINDER[0]:CYLINDER[1] + 1][:, (rows - 20) ** 2 + (cols - 18) ** 2 < 64] = 1.0
    for row, col in ((0, 0), (0, -1), (-1, 0), (-1, -1)):  # whichever corner the display orientation shows first
        array[:, row, col] = np.arange(30) / 1000
    model = ThresholdModel()
    engine = VolumeSegmenter(model, Volume(array, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3)), IntensityWindow(0.0, 1.0))
    return engine, model, Prompt(box=box_of(engine.slice_image("axial", 15) > 0.5, min_margin_px=2))


def walked(model: ThresholdModel, seeds) -> Counter:
    """Decodes per slice beyond the seeds' own prompts."""
    return Counter({index: count - (index in seeds) for index, count in model.decoded.items()})


def test_seeds_fill_the_organ_and_no_slice_outside_them_is_decoded_twice(cylinder):
    engine, model, disc = cylinder
    seeds = (8, 14, 20)
    result = propagate_from_seeds(engine, "axial", {k: disc for k in seeds})
    assert sorted(result.masks) == list(range(CYLINDER[0], CYLINDER[1] + 1))
    assert all(mask.sum() > 150 for mask in result.masks.values())
    assert result.stop_reasons == {"down": "slice 4: mask vanished", "up": "slice 25: mask vanished"}
    decodes = walked(model, seeds)
    outside = [decodes[k] for k in range(30) if not seeds[0] <= k <= seeds[-1]]
    assert max(outside) == 1, "the outermost seeds walk inward only as far as their neighbours"
    assert all(decodes[k] <= 2 for k in range(seeds[0], seeds[-1] + 1)), "once from each side at most"


def test_a_hole_both_neighbouring_walks_stop_short_of_is_filled_from_a_seed_farther_out(cylinder):
    """Slices 11-12 are darker: the walks from seeds 9 and 15 (bright) stop at them on the intensity rule;
    seed 6's slice shows both intensities, so its walk passes 9 and fills the hole."""
    engine, model, disc = cylinder
    array = engine.volume.array
    inside = array > 0.5
    array[11:13][inside[11:13]] = 0.6
    array[6, :20][inside[6, :20]] = 0.6
    result = propagate_from_seeds(engine, "axial", {k: disc for k in (6, 9, 15)})
    assert sorted(result.masks) == list(range(CYLINDER[0], CYLINDER[1] + 1))
    plain = propagate_from_seeds(engine, "axial", {k: disc for k in (9, 15)})
    assert not {11, 12} & set(plain.masks), "without a seed farther out the hole stays"


def test_a_seed_with_an_empty_mask_bounds_the_walks_and_is_named(cylinder):
    engine, _, disc = cylinder
    result = propagate_from_seeds(engine, "axial", {2: disc, 12: disc})
    assert sorted(result.masks) == list(range(CYLINDER[0], CYLINDER[1] + 1))
    assert result.stop_reasons["seed 2"] == "empty mask: the walks stop before it" and result.seed_index == 12
    off_disc = Prompt(box=(30.0, 30.0, 35.0, 35.0))  # on the organ's slices, but around nothing
    bounded = propagate_from_seeds(engine, "axial", {10: disc, 16: off_disc, 20: disc})
    assert sorted(bounded.masks) == [*range(CYLINDER[0], 16), *range(17, CYLINDER[1] + 1)], "no walk crosses 16"
    ended = propagate_from_seeds(engine, "axial", {10: disc, 16: off_disc})
    assert max(ended.masks) == 15
    assert ended.stop_reasons["up"] == "stopped before slice 16, whose prompt gave an empty mask"
    with pytest.raises(InputError, match=r"empty mask on axial slices \[1, 2\]"):
        propagate_from_seeds(engine, "axial", {1: disc, 2: disc})
    with pytest.raises(InputError, match="no seed prompts"):
        propagate_from_seeds(engine, "axial", {})


def test_a_cancel_keeps_the_prompted_slices_and_says_so(cylinder):
    engine, _, disc = cylinder
    result = propagate_from_seeds(engine, "axial", {10: disc, 18: disc},
                                  should_stop=lambda: True)
    assert sorted(result.masks) == [10, 18] and result.stop_reasons == {"down": "cancelled", "up": "cancelled"}


def test_segment_prompts_unpropagated_ranged_and_seeded(cylinder):
    engine, _, disc = cylinder
    prompts = {9: disc, 17: disc}
    alone = segment_prompts(engine, "axial", prompts)
    assert alone.slices == (9, 17) and alone.predicted_iou == pytest.approx(0.9) and alone.stop_reasons == {}
    assert sorted(np.flatnonzero(alone.mask.any(axis=(1, 2)))) == [9, 17]
    ranged = segment_prompts(engine, "axial", prompts, PropagationConfig(max_slices=2))
    assert ranged.slices == (7, 19) and ranged.predicted_iou is None  # 2 outward, and all of 9..17 between
    assert ranged.mask.any(axis=(1, 2)).sum() == 13
    with pytest.raises(InputError, match="no prompts"):
        segment_prompts(engine, "axial", {})


def test_two_seeds_on_a_real_kidney_each_fill_the_slices_nearest_them(shared_data):
    """LiteMedSAM (real weights), sample CT right kidney, prompted at a quarter and three quarters."""
    torch.set_num_threads(2)
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    engine = VolumeSegmenter(build_segmenter("litemedsam", device="cpu"), ct)
    reference = engine.stack("axial").view(labels == KIDNEY_RIGHT)
    present = np.flatnonzero(reference.any(axis=(1, 2)))
    low, high = int(present[len(present) // 4]), int(present[3 * len(present) // 4])
    result = propagate_from_seeds(engine, "axial", {k: Prompt(box=box_of(reference[k])) for k in (low, high)})
    assert min(result.masks) <= present.min() + 1 and max(result.masks) >= present.max() - 1
    seeded_low = propagate(engine, "axial", low, Prompt(box=box_of(reference[low])),
                           PropagationConfig(max_slices=high - low)).masks
    for index in range(low, (low + high) // 2 + 1):
        np.testing.assert_array_equal(result.masks[index], seeded_low[index])  # nearer to the lower seed
    truth = engine.to_volume_mask("axial", {int(k): reference[k] for k in present})
    assert overlap_metrics(engine.to_volume_mask("axial", result.masks), truth)["dice"] > 0.85

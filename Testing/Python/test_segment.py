"""Prompted segmentation: real LiteMedSAM weights on the sample CT, every model's official weight layout,
the embedding cache, and propagation through the volume with a working stop rule."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from vfmlab.errors import InputError, WeightsError
from vfmlab.volume_io import read_labels, read_volume
from vfmlab.metrics import segment_metrics
from vfmlab.segment.propagate import PropagationConfig, box_of, propagate
from vfmlab.segment.registry import build_segmenter
from vfmlab.segment.segmenter import Prompt
from vfmlab.segment.volume_segmenter import VolumeSegmenter

ORGANS = {"liver": 5, "spleen": 1, "kidney_right": 2, "aorta": 52}


@pytest.fixture(scope="module")
def sample(shared_data):
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    return ct, read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)


@pytest.fixture(scope="module")
def litemedsam():
    torch.set_num_threads(2)
    return build_segmenter("litemedsam", device="cpu")


@pytest.fixture(scope="module")
def session(litemedsam, sample):
    return VolumeSegmenter(litemedsam, sample[0])


def middle_slice(reference_view: np.ndarray) -> int:
    indices = np.flatnonzero(reference_view.any(axis=(1, 2)))
    return int(indices[len(indices) // 2])


def test_box_prompts_with_real_litemedsam_weights(session, sample):
    labels_view = session.stack("axial").view(sample[1])
    for organ, value in ORGANS.items():
        reference = labels_view == value
        index = middle_slice(reference)
        prediction = session.segment_slice("axial", index, Prompt(box=box_of(reference[index])))
        score = segment_metrics(prediction.mask, reference[index])["dice"]
        print(f"LiteMedSAM box prompt, {organ} axial slice {index}: Dice {score:.3f}, predicted IoU {prediction.iou:.2f}")
        assert score > 0.85, organ
        assert 0.5 < prediction.iou <= 1.1


def test_cached_embedding_answers_new_prompts_without_encoding(session, sample, monkeypatch):
    reference = session.stack("axial").view(sample[1]) == ORGANS["spleen"]
    index = middle_slice(reference)
    session.embedding("axial", index)
    calls = []
    monkeypatch.setattr(session.segmenter, "encode", lambda image: calls.append(1))
    start = time.perf_counter()
    rows, cols = np.nonzero(reference[index])
    point = Prompt(points=[[cols.mean(), rows.mean()]], point_labels=[1])
    prediction = session.segment_slice("axial", index, point)
    latency = time.perf_counter() - start
    print(f"prompt-to-mask latency with a cached embedding: {latency * 1000:.0f} ms")
    assert calls == [] and session.cache.hits >= 1
    assert prediction.mask[int(rows.mean()), int(cols.mean())], "a positive click must lie inside its mask"


def test_propagation_stops_at_the_organ_end(session, sample):
    """Seeded a few slices below the right kidney's upper pole: the walk up must stop at the pole, not
    run on to the volume's end; the walk down stops at the user's range. (The whole-organ runs, against
    the true box on every slice, are in bench/segment_bench.py.)"""
    labels_view = session.stack("axial").view(sample[1])
    reference = labels_view == ORGANS["kidney_right"]
    present = np.flatnonzero(reference.any(axis=(1, 2)))
    seed = int(present.max()) - 4
    config = PropagationConfig(max_slices=4)
    result = propagate(session, "axial", seed, Prompt(box=box_of(reference[seed])), config)
    covered = range(seed - 4, present.max() + 1)
    propagated = session.to_volume_mask("axial", result.masks)
    upper_bound = session.to_volume_mask("axial", {
        k: session.segment_slice("axial", k, Prompt(box=box_of(reference[k]))).mask for k in covered})
    truth = session.to_volume_mask("axial", {k: reference[k] for k in covered})
    dice_propagated = segment_metrics(propagated, truth)["dice"]
    dice_every_slice = segment_metrics(upper_bound, truth)["dice"]
    print(f"kidney_right slices {covered.start}..{covered.stop - 1}: propagated from {seed} over {result.slice_range}, "
          f"Dice {dice_propagated:.3f}; true box on every slice {dice_every_slice:.3f}; stops {result.stop_reasons}")
    assert abs(result.slice_range[1] - present.max()) <= 2, "the walk up did not stop at the kidney's pole"
    assert "range limit" in result.stop_reasons["down"] and result.slice_range[0] == seed - 4
    assert dice_propagated > 0.85 and dice_propagated > dice_every_slice - 0.05


def test_empty_seed_and_bad_prompts_are_refused(session):
    with pytest.raises(InputError, match="box or at least one point"):
        Prompt()
    with pytest.raises(InputError, match="x0 <= x1"):
        Prompt(box=(10, 10, 5, 20))
    with pytest.raises(InputError, match="outside the volume"):
        session.slice_image("axial", 10_000)
    with pytest.raises(InputError, match="empty"):
        box_of(np.zeros((4, 4), bool))


def test_hq_litemedsam_starts_close_to_litemedsam(litemedsam, session, sample):
    """The HQ mask starts at zero, so before fine-tuning HQ-LiteMedSAM's mask is nearly LiteMedSAM's
    (only the untrained HQ token's share of the decoder's attention differs)."""
    hq = build_segmenter("hq_litemedsam", device="cpu")
    reference = session.stack("axial").view(sample[1]) == ORGANS["liver"]
    index = middle_slice(reference)
    image = session.slice_image("axial", index)
    prompt = Prompt(box=box_of(reference[index]))
    plain = litemedsam.predict(litemedsam.encode(image), prompt)
    enhanced = hq.predict(hq.encode(image), prompt)
    agreement = segment_metrics(enhanced.mask, plain.mask)["dice"]
    print(f"untuned HQ-LiteMedSAM vs LiteMedSAM mask Dice: {agreement:.3f}")
    assert agreement > 0.9
    hq_parameters = [p for n, p in hq.model.named_parameters() if n.startswith("mask_decoder.hf_mlp.layers.2")]
    assert hq_parameters and all(float(p.detach().abs().max()) == 0.0 for p in hq_parameters)


def _official_layout_checkpoint(tmp_path, name: str) -> str:
    """A random state dict in the official key layout of ``name``, saved as its authors ship it."""
    if name.startswith("hq_"):
        from segment_anything_hq import sam_model_registry
    else:
        from segment_anything import sam_model_registry
    model = sam_model_registry["vit_tiny" if name.endswith("tiny") else "vit_b"]()
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.mark.parametrize("name", ["sam_vit_b", "hq_sam_vit_b", "hq_sam_vit_tiny"])
def test_official_sam_layouts_load(tmp_path, name):
    # torch: an ONNX export of random weights would only cost time here (test_segment_backends covers it)
    segmenter = build_segmenter(name, local_file=_official_layout_checkpoint(tmp_path, name), device="cpu",
                                backend="torch")
    assert segmenter.image_size == 1024 and segmenter.hq == name.startswith("hq_")
    if name == "hq_sam_vit_tiny":  # small enough to run here: the whole prompt path on a random image
        image = np.random.default_rng(0).random((96, 128)).astype(np.float32)
        prediction = segmenter.predict(segmenter.encode(image), Prompt(box=(20, 10, 80, 60)))
        assert prediction.mask.shape == (96, 128) and np.isfinite(prediction.logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sam_vit_b", "hq_sam_vit_b"])
def test_vit_b_prompt_path_runs(tmp_path, name):
    segmenter = build_segmenter(name, local_file=_official_layout_checkpoint(tmp_path, name), device="cpu")
    prediction = segmenter.predict(segmenter.encode(np.random.default_rng(0).random((64, 80))), Prompt(box=(5, 5, 40, 30)))
    assert prediction.mask.shape == (64, 80)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    from vfmlab.weights import resolve

    with pytest.raises(WeightsError, match="not a sam_vit_b checkpoint"):
        build_segmenter("sam_vit_b", local_file=resolve("litemedsam"))
    with pytest.raises(WeightsError, match="unknown segmentation model"):
        build_segmenter("nnunet")

"""BT-VAE data: slices of real volumes and 2D folders, the label-ratio split, configs, the model registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vfmlab.btvae.config import DataConfig, ModelConfig, TrainConfig
from vfmlab.btvae.data import SquareFit, load_sources, split_slices
from vfmlab.btvae.registry import MODEL_NAMES, build_model
from vfmlab.btvae.unet import build_unet, down_path
from vfmlab.errors import InputError
from vfmlab.volume_io import read_labels, read_volume


@pytest.fixture(scope="module")
def ct_sources(shared_data):
    return [{"volume": str(shared_data / "totalseg" / "example_ct.nii.gz"),
             "labels": str(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz")}]


def test_ct_slices_keep_negatives_and_match_the_label_map(ct_sources):
    slices = load_sources(ct_sources, "5", DataConfig(axis="axial"), 64)
    volume = read_volume(ct_sources[0]["volume"])
    labels = read_labels(ct_sources[0]["labels"], volume)
    liver_slices = int((labels == 5).any(axis=(1, 2)).sum())  # axial = along K for this axis-aligned CT
    assert slices.images.shape == (volume.array.shape[0], 64, 64)
    assert slices.images.min() >= 0.0 and slices.images.max() <= 1.0
    assert int(slices.positive.sum()) == pytest.approx(liver_slices, abs=2)  # thin edge slices may vanish at 64²
    assert (~slices.positive).sum() > 40  # negative slices are kept
    coronal = load_sources(ct_sources, "5", DataConfig(axis="coronal"), 64)
    assert len(coronal) == volume.array.shape[1]


def test_split_is_stratified_nested_over_ratios_and_test_set_fixed():
    positive = np.zeros(100, bool)
    positive[10:40] = True
    splits = {ratio: split_slices(positive, DataConfig(ratio=ratio, seed=3)) for ratio in (0.9, 0.5, 0.1)}
    tests = [tuple(split.test) for split in splits.values()]
    assert len(set(tests)) == 1  # the held-back slices do not depend on the ratio
    first = splits[0.9]
    assert positive[first.test].sum() == 6 and (~positive[first.test]).sum() == 14  # 20 % of each stratum
    for split in splits.values():
        everything = np.concatenate([split.test, split.labelled, split.unlabelled])
        assert sorted(everything.tolist()) == list(range(100))  # a partition
        np.testing.assert_array_equal(split.training, np.setdiff1d(np.arange(100), split.test))
    assert set(splits[0.1].labelled) <= set(splits[0.5].labelled) <= set(splits[0.9].labelled)
    assert len(splits[0.5].labelled) == 40  # half of the 80 training slices
    assert positive[splits[0.1].labelled].sum() >= 1
    other_seed = split_slices(positive, DataConfig(ratio=0.5, seed=4))
    assert tuple(other_seed.test) != tests[0]


def test_key_slice_labelling_takes_the_priority_order_and_keeps_the_test_slices():
    positive = np.zeros(100, bool)
    positive[10:40] = True
    random = split_slices(positive, DataConfig(ratio=0.2, seed=3))
    priority = np.arange(100)[::-1]  # the last slices are the most worth labelling
    keyed = split_slices(positive, DataConfig(ratio=0.2, seed=3, label_choice="key"), priority)
    np.testing.assert_array_equal(keyed.test, random.test)
    assert len(keyed.labelled) == len(random.labelled)
    for stratum in (positive, ~positive):
        pool = np.setdiff1d(np.flatnonzero(stratum), keyed.test)
        labelled = np.intersect1d(keyed.labelled, pool)
        assert labelled.min() > np.setdiff1d(pool, labelled).max(), "the top of the order is labelled first"
    with pytest.raises(InputError, match="unknown label choice"):
        DataConfig(label_choice="best").validate()


def test_split_refuses_a_segment_in_fewer_than_two_slices():
    with pytest.raises(InputError, match="at least 2"):
        split_slices(np.eye(1, 10, dtype=bool)[0], DataConfig())


def test_usgra_folder_palette_masks_give_a_negative_image_for_label_2(shared_data):
    slices = load_sources([{"folder": str(shared_data / "usgra_seg")}], "2", DataConfig(), 64)
    assert len(slices) == 8
    assert slices.positive.tolist() == [True] * 7 + [False]  # 0046.png has no structure 2
    with pytest.raises(InputError, match="as a number"):
        load_sources([{"folder": str(shared_data / "usgra_seg")}], "nerve", DataConfig(), 64)


def test_sammed2d_folder_instance_masks_by_organ_name(shared_data):
    slices = load_sources([{"folder": str(shared_data / "sammed2d_demo")}], "liver", DataConfig(), 64)
    assert slices.positive.tolist() == [True, True, False, False, False]
    with pytest.raises(InputError, match="no mask of label 'brain'"):
        load_sources([{"folder": str(shared_data / "sammed2d_demo")}], "brain", DataConfig(), 64)


def test_absent_label_is_refused(ct_sources):
    with pytest.raises(InputError, match="label 999 does not occur"):
        load_sources(ct_sources, "999", DataConfig(), 64)


def test_square_fit_round_trip_keeps_shape_and_content():
    fit = SquareFit(30, 50, 64)
    image = np.zeros((1, 30, 50), np.float32)
    image[0, 10:20, 20:30] = 1.0
    model_input = fit.to_model(image)
    assert model_input.shape == (1, 64, 64)
    back = fit.from_model(model_input)
    assert back.shape == (1, 30, 50)
    assert np.abs(back - image).mean() < 0.05
    mask = fit.to_model(image, is_mask=True)
    assert set(np.unique(mask)) <= {0.0, 1.0}


def test_config_round_trip_and_validation():
    config = TrainConfig.cpu(128)
    assert config.model.widths == (16, 32, 64, 128, 256) and config.model.latent_size == 8
    assert TrainConfig.paper().model.latent_channels == 1024 and TrainConfig.paper().model.latent_size == 8
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="unknown"):
        TrainConfig.from_dict({"model": {"widthz": [1]}})
    with pytest.raises(InputError, match="divisible"):
        ModelConfig(image_size=100, widths=(8, 16, 32, 64)).validate()


def test_registry_builds_every_model_and_vae_shares_the_unet_encoder():
    config = ModelConfig.cpu(32)
    image = torch.rand(2, 1, 32, 32)
    for name in MODEL_NAMES:
        output = build_model(name, config)(image)
        assert output.logits.shape == (2, 1, 32, 32)
        assert (output.mu is None) == (name in ("unet", "bt-unet"))
        # The mask head starts at the foreground prior: p ≈ 0.01 before any training.
        assert float(torch.sigmoid(output.logits.detach()).median()) < 0.1
    vae = build_model("vae", config)
    unet_encoder = down_path(build_unet(config))
    assert [type(layer) for layer in vae.encoder.down] == [type(layer) for layer in unet_encoder]
    assert [p.shape for p in vae.encoder.down.parameters()] == [p.shape for layer in unet_encoder for p in layer.parameters()]
    with pytest.raises(InputError, match="unknown btvae model .mist.; choose one of btvae, vae"):
        build_model("mist", config)

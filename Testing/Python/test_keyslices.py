"""Key slices: scores, selection, coverage and fusion on hand-made numbers, then ``vfmlab slices`` and
``vfmlab slices-similar`` end to end with LiteMedSAM's real encoder on a 26-slice CT and an MR."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from vfmlab.cli import main
from vfmlab.errors import InputError
from vfmlab.keyslices.config import KeySliceConfig, ScoreWeights
from vfmlab.keyslices.fusion import rank_by_similarity, volume_descriptor
from vfmlab.keyslices.scoring import combine, novelty, scaled
from vfmlab.keyslices.selection import coverage, select_contiguous, select_diverse
from vfmlab.volume import Volume
from vfmlab.volume_io import read_labels, read_volume, write_volume

def test_the_count_follows_the_ratio_or_the_budget():
    assert KeySliceConfig().count(26) == 8  # 0.3 x 26 = 7.8
    assert KeySliceConfig(ratio=0.5).count(7) == 4 and KeySliceConfig(ratio=0.01).count(26) == 1
    assert KeySliceConfig(budget=40).count(26) == 26 and KeySliceConfig(budget=3).count(26) == 3


def test_novelty_peaks_where_the_anatomy_changes():
    features = np.vstack([np.tile([1.0, 0.0, 0.2], (5, 1)), np.tile([0.0, 1.0, 0.2], (5, 1))])
    values = novelty(features)
    assert set(np.argsort(values)[-2:]) == {4, 5} and values[0] == pytest.approx(0.0, abs=1e-12)


def test_the_score_is_the_weighted_mean_of_the_scaled_components_present():
    components = {"attention": np.array([0.0, 1.0, 2.0]), "foreground": np.array([5.0, 5.0, 7.0])}
    total = combine(components, ScoreWeights(attention=1.0, foreground=3.0, segment=2.0))
    np.testing.assert_allclose(total, (scaled(components["attention"]) + 3 * np.array([0, 0, 1.0])) / 4)
    with pytest.raises(InputError, match="every score weight is zero"):
        combine(components, ScoreWeights(attention=0, foreground=0))


def test_diversity_keeps_two_nearly_identical_neighbours_from_both_being_chosen():
    features = np.vstack([np.tile([1.0, 0.0], (5, 1)) + 1e-3 * np.arange(5)[:, None], [[0.0, 1.0]] * 5])
    total = np.array([1.0, 0.99, 0.98, 0.97, 0.96, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert select_diverse(total, features, 2, diversity=0.0) == [0, 1]
    chosen = select_diverse(total, features, 2, diversity=1.0)
    assert chosen[0] == 0 and chosen[1] >= 5, "the second slice comes from the other structure"


def test_a_run_of_high_scoring_neighbours_gives_spaced_slices():
    """Thin slices next to each other look alike even when their features differ: chosen slices keep the gap."""
    rng = np.random.default_rng(0)
    total = np.r_[np.linspace(1.0, 0.9, 30), np.linspace(0.3, 0.2, 70)]
    chosen = select_diverse(total, rng.normal(size=(100, 8)), 30, diversity=0.5,
                            min_gap=KeySliceConfig().min_gap(100))
    assert KeySliceConfig(ratio=0.3).min_gap(100) == 2 and np.diff(chosen).min() >= 2
    assert len(chosen) == 30 and 10 <= sum(index < 30 for index in chosen) <= 15  # at most every other one
    assert KeySliceConfig(ratio=0.8).min_gap(10) == 1


def test_contiguous_mode_keeps_the_best_run():
    assert select_contiguous(np.array([0.1, 0.9, 0.2, 0.8, 0.9, 0.7, 0.0]), 3) == [3, 4, 5]


def test_coverage_of_the_volume_and_of_each_segment():
    liver = np.zeros(10, bool)
    liver[6:10] = True
    report = coverage([2, 7], 10, cover_distance=1, segments={"liver": liver, "absent": np.zeros(10, bool)})
    assert report["volume"] == {"covered": 0.6, "largest_gap": 5, "chosen": 2, "slices": 10}
    assert report["liver"] == {"hit": True, "chosen": 1, "chosen_share": 0.25, "covered": 0.75, "slices": 4}
    assert "absent" not in report


def test_the_descriptor_fuses_pairs_and_weights_them_by_score():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    assert volume_descriptor(features, [1], np.ones(4)) == pytest.approx([0.0, 1.0])
    sharp = volume_descriptor(features, [2, 1, 0], np.array([0.0, 1.0, 1.0, 0.0]), tau=0.01)
    assert sharp == pytest.approx([0.0, 1.0], abs=1e-6), "the pair of the two best slices dominates"
    ranked = rank_by_similarity(np.array([1.0, 0.0]), {"a": np.array([0.0, 1.0]), "b": np.array([0.8, 0.6])})
    assert [name for name, _ in ranked] == ["b", "a"]
    with pytest.raises(InputError, match="another model"):
        rank_by_similarity(np.ones(2), {"c": np.ones(3)})


@pytest.fixture(scope="module")
def ct26(shared_data, tmp_path_factory):
    """26 axial slices of the sample CT (kidneys, liver, spleen, pancreas) with their labels, as files."""
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    folder = tmp_path_factory.mktemp("ct26")
    origin = ct.ijk_to_ras_points([[0, 0, 60]])[0]
    volume = Volume(ct.array[60:86], ct.spacing, origin, ct.direction)
    kept = np.where(np.isin(labels[60:86], [1, 2, 3, 5, 7]), labels[60:86], 0).astype(np.uint8)
    write_volume(volume, folder / "ct26.nrrd")
    write_volume(volume.with_array(kept), folder / "ct26_labels.nrrd")
    flipped = Volume(volume.array[:, :, ::-1].copy(), volume.spacing, volume.ijk_to_ras_points([[121, 0, 0]])[0],
                     volume.direction @ np.diag([-1.0, 1.0, 1.0]))
    write_volume(flipped, folder / "ct26_flipped.nrrd")
    return folder


def test_slices_on_a_26_slice_ct_chooses_7_to_9_covering_the_organs(ct26, capsys):
    out = ct26 / "keys"
    assert main(["slices", str(ct26 / "ct26.nrrd"), "--ratio", "0.3", "--labels", str(ct26 / "ct26_labels.nrrd"),
                 "--out", str(out)]) == 0
    selection = json.loads((out / "selection.json").read_text())
    assert 7 <= len(selection["indices"]) <= 9 and selection["slices"] == 26
    assert selection["indices"] == sorted(set(selection["indices"]))
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 26 and {"attention", "novelty", "foreground", "contrast", "segment"} <= set(rows[0])
    assert [int(r["slice"]) for r in rows if r["chosen"] == "1"] == selection["indices"]
    assert all(selection["coverage"][f"label {value}"]["hit"] for value in (2, 3, 5)), selection["coverage"]
    assert selection["coverage"]["volume"]["covered"] > 0.6
    assert (out / "strip.png").stat().st_size > 5000
    assert np.load(out / "features.npy").shape == (26, 256)
    printed = capsys.readouterr().out
    assert f"{len(selection['indices'])} of 26 axial slices" in printed


def test_the_same_anatomy_stored_flipped_gives_the_same_key_slices_and_ranks_first(ct26, shared_data, capsys):
    # the label file lies on the unflipped grid: read_labels puts it onto the flipped one
    assert main(["slices", str(ct26 / "ct26_flipped.nrrd"), "--ratio", "0.3", "--labels",
                 str(ct26 / "ct26_labels.nrrd"), "--out", str(ct26 / "flipped")]) == 0
    plain = json.loads((ct26 / "keys" / "selection.json").read_text())
    flipped = json.loads((ct26 / "flipped" / "selection.json").read_text())
    assert flipped["indices"] == plain["indices"] and flipped["coverage"] == plain["coverage"]
    capsys.readouterr()
    mr = shared_data / "totalseg" / "example_mr_sm.nii.gz"
    assert main(["slices-similar", str(ct26 / "keys"), str(mr), str(ct26 / "flipped")]) == 0
    ranked = [line.split() for line in capsys.readouterr().out.strip().splitlines() if line[:1].isdigit()]
    assert ranked[0][1] == str(ct26 / "flipped") and float(ranked[0][0]) > 0.999
    assert float(ranked[1][0]) < float(ranked[0][0])


def test_bad_requests_are_one_line_errors(ct26, tmp_path, capsys):
    assert main(["slices", str(ct26 / "ct26.nrrd"), "--ratio", "0", "--out", str(tmp_path / "x")]) == 2
    assert "the ratio must be in (0, 1]" in capsys.readouterr().err
    assert main(["slices", str(ct26 / "missing.nrrd"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_the_panel_finds_key_slices_on_the_server_and_jumps_a_slice_view_onto_them(ct26, model_server):
    """The Key slices section's logic on real MRML: the job on a real local server, the results mirrored, a
    click moving an axial slice node onto the key slice's plane (same RAS whatever the voxel order)."""
    import slicer

    from VFMVolumeLabLib.keyslices_logic import KeySlicesLogic, read_result

    from conftest import FakeTimers, ready_client
    from vfmlab import mrml
    from vfmlab.slices import SliceStack

    client = ready_client(model_server)
    scene = mrml.new_scene()
    volume_node = mrml.load_volume_node(scene, ct26 / "ct26_flipped.nrrd", name="CT")
    logic = KeySlicesLogic(scene, timer_factory=FakeTimers())
    with pytest.raises(InputError, match="select the volume"):
        logic.start(client, None, ct26 / "panel", 0.3)
    with pytest.raises(InputError, match="the ratio must be in"):  # refused before the volume is sent
        logic.start(client, volume_node, ct26 / "panel", 0.0)
    assert not (ct26 / "panel").exists()
    done = []
    logic.start(client, volume_node, ct26 / "panel", 0.3, on_done=lambda state, outcome: done.append((state, outcome)))
    logic.timer_factory.run_until(lambda: done, 300)
    state, outcome = done[0]
    assert state == "finished", outcome
    expected = json.loads((ct26 / "flipped" / "selection.json").read_text())
    assert outcome["indices"] == read_result(ct26 / "panel")["indices"]
    assert 7 <= len(outcome["indices"]) <= 9 and (ct26 / "panel" / "strip.png").is_file()
    assert set(outcome["indices"]) & set(expected["indices"]), "the same scan, scored without labels, shares key slices"

    slice_node = slicer.vtkMRMLSliceNode()
    slice_node.SetLayoutName("Red")
    scene.AddNode(slice_node)
    slice_node.SetOrientation("Axial")
    index = outcome["indices"][0]
    point = logic.jump(slice_node, volume_node, "axial", index)
    volume = mrml.volume_from_node(volume_node)
    kji = SliceStack.of(volume, "axial").slice_to_voxel([[index, 0, 0]])[0]
    assert point[2] == pytest.approx(volume.ijk_to_ras_points([kji[::-1]])[0][2], abs=1e-6)
    assert slice_node.GetSliceOffset() == pytest.approx(point[2], abs=1e-6)
    ordered = sorted(outcome["indices"])  # "Next key slice" goes on from the slice the view shows
    assert logic.next_key_slice(volume_node, "axial", logic.jump(slice_node, volume_node, "axial", ordered[0]),
                                outcome["indices"]) == ordered[1]
    last = logic.jump(slice_node, volume_node, "axial", ordered[-1])
    assert logic.next_key_slice(volume_node, "axial", last, outcome["indices"]) == ordered[0]
    panned_off = last + np.array([500.0, 500.0, 0.0])  # the view's centre beside the volume, on the same slice
    assert logic.next_key_slice(volume_node, "axial", panned_off, outcome["indices"]) == ordered[0]


def test_the_labelling_order_is_a_permutation_led_by_the_top_key_slice(ct26):
    """BT-VAE's "key" label choice: every slice once, the first the highest-scoring one."""
    from vfmlab.keyslices.run import labelling_order
    from vfmlab.segment.intensity import IntensityWindow

    volume = read_volume(ct26 / "ct26.nrrd")
    images = IntensityWindow.for_modality(volume.array).apply(volume.array[::3])  # 9 axial slices
    order = labelling_order(images)
    assert sorted(order.tolist()) == list(range(len(images)))

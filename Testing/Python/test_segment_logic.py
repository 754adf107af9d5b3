"""SegmentationTools' segment logic on real MRML through a real model server: markups → prompts, segments
written safely, undo, propagation followed by polling, a server restarted after a crash, the panel's link."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import slicer

from vfmlab import mrml
from vfmlab.errors import InputError
from vfmlab.volume_io import read_labels, read_volume
from vfmlab.metrics import segment_metrics
from vfmlab.mrml.markups import slice_prompt
from vfmlab.slices import SliceStack
from vfmlab.volume import Volume

from vfmlab.client import ServerConnection, ServerUnavailable

from conftest import REPO_ROOT, FakeTimers, ready_client, wait_for

sys.path.insert(0, str(REPO_ROOT / "SegmentationTools"))
sys.path.insert(0, str(REPO_ROOT / "VFMVolumeLab"))
from SegmentationToolsLib.segment_logic import SegmentSession  # noqa: E402
from VFMVolumeLabLib.job_follower import ManualTimer as FakeTimer  # noqa: E402
from VFMVolumeLabLib.server_link import ClientWaiter, ModelServerLink, ServerSettings  # noqa: E402

SERVER_OPTIONS = ("--device", "cpu")


@pytest.fixture(scope="module")
def sample(shared_data):
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    return ct, read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)


def markups(scene, class_name: str, points_ras) -> object:
    node = getattr(slicer, class_name)()
    scene.AddNode(node)
    for point in points_ras:
        node.AddControlPointWorld(*point)
    return node


def test_points_and_box_map_to_the_right_pixels_on_a_flipped_volume():
    direction = np.diag([-1.0, -1.0, 1.0])  # stored LPS-like: I runs right→left, J anterior→posterior
    volume = Volume(np.zeros((5, 6, 7), np.int16), (2.0, 3.0, 4.0), (10.0, 20.0, -5.0), direction)
    stack = SliceStack.of(volume, "axial")
    inside = volume.ijk_to_ras_points([[2, 3, 1]])
    outside = volume.ijk_to_ras_points([[5, 1, 1]])
    corners = volume.ijk_to_ras_points([[1, 1, 1], [4, 4, 1]])
    prompt = slice_prompt(volume, "axial", inside, outside, corners)
    expected_inside = stack.voxel_to_slice([[1, 3, 2]])[0]
    expected_outside = stack.voxel_to_slice([[1, 1, 5]])[0]
    assert prompt.index == expected_inside[0] == 1
    np.testing.assert_array_equal(prompt.points, [expected_inside[[2, 1]], expected_outside[[2, 1]]])
    np.testing.assert_array_equal(prompt.point_labels, [1, 0])
    rows_cols = stack.voxel_to_slice([[1, 1, 1], [1, 4, 4]])[:, 1:]
    assert prompt.box == (rows_cols[:, 1].min(), rows_cols[:, 0].min(), rows_cols[:, 1].max(), rows_cols[:, 0].max())
    with pytest.raises(InputError, match="same slice"):
        slice_prompt(volume, "axial", volume.ijk_to_ras_points([[2, 3, 1], [2, 3, 3]]))


def test_a_prompt_needs_only_the_volumes_geometry_and_the_views_slice(sample):
    """"Add prompt as seed" builds the prompt from the node's geometry (no voxel copy): the same prompt as on
    the full volume; the view's centre may be panned aside, not beyond the volume's ends."""
    from SegmentationToolsLib.segment_logic import prompt_from_markups, slice_index_at

    ct, _ = sample
    scene = mrml.new_scene()
    node = mrml.add_volume_node(scene, ct, name="CT")
    geometry = mrml.volume_geometry(node)
    centre = ct.ijk_to_ras_points([[50, 60, 40]])[0]
    index = slice_index_at(geometry, "axial", centre)
    assert index == slice_index_at(ct, "axial", centre) == SliceStack.of(ct, "axial").voxel_to_slice([[40, 60, 50]])[0, 0]
    assert slice_index_at(geometry, "axial", centre + [400.0, -400.0, 0.0]) == index  # panned aside
    with pytest.raises(ValueError, match="beyond the volume"):
        slice_index_at(geometry, "axial", centre + [0.0, 0.0, 2000.0])
    inside = markups(scene, "vtkMRMLMarkupsFiducialNode", ct.ijk_to_ras_points([[45, 55, 40], [60, 70, 40]]))
    placed, expected = (prompt_from_markups(volume, "axial", inside, slice_index=index) for volume in (geometry, ct))
    assert placed.index == expected.index == index and placed.box == expected.box is None
    np.testing.assert_array_equal(placed.points, expected.points)


class SettingsStore(dict):
    """The part of ``qt.QSettings`` the link uses."""

    def value(self, key, default=None):
        return self.get(key, default)

    def setValue(self, key, value):
        self[key] = value


@pytest.fixture(scope="session")
def connection(model_server):
    return model_server


@pytest.fixture(scope="module")
def segment_session(sample, connection):
    scene = mrml.new_scene()
    volume_node = mrml.add_volume_node(scene, sample[0], name="CT")
    return scene, volume_node, SegmentSession(volume_node, ready_client(connection), "litemedsam")


def test_roi_prompt_segments_the_spleen_into_a_new_segment_and_undo_restores(segment_session, sample):
    scene, volume_node, session = segment_session
    ct, labels = sample
    stack = SliceStack.of(ct, "axial")
    spleen = stack.view(labels) == 1
    index = int(np.flatnonzero(spleen.any(axis=(1, 2)))[15])
    rows, cols = np.nonzero(spleen[index])
    corner_kji = stack.slice_to_voxel([[index, rows.min(), cols.min()], [index, rows.max(), cols.max()]])
    corners = ct.ijk_to_ras_points(corner_kji[:, ::-1])
    roi = slicer.vtkMRMLMarkupsROINode()
    scene.AddNode(roi)
    roi.SetXYZ(*corners.mean(axis=0))
    roi.SetRadiusXYZ(*(np.abs(corners[1] - corners[0]) / 2))
    prompt = session.prompt_from_markups("axial", roi_node=roi, slice_index=index)

    segmentation = mrml.add_segmentation_from_labels(scene, labels, volume_node, names={1: "spleen", 5: "liver"})
    before = {sid: mrml.segment_mask(segmentation, sid, volume_node).sum() for sid in mrml.segment_names(segmentation)}
    result = session.segment(prompt, segmentation, "spleen (LiteMedSAM)")
    written = mrml.segment_mask(segmentation, result.segment_id, volume_node)
    score = segment_metrics(stack.view(written)[index], spleen[index])["dice"]
    print(f"ROI-prompted spleen in a real segmentation node: Dice {score:.3f}")
    assert score > 0.85 and stack.view(written).sum() == stack.view(written)[index].sum()
    assert mrml.segment_names(segmentation)[result.segment_id] == "spleen (LiteMedSAM)"
    after = {sid: mrml.segment_mask(segmentation, sid, volume_node).sum() for sid in before}
    assert after == before, "a user's segment changed"

    liver_id = {n: s for s, n in mrml.segment_names(segmentation).items()}["liver"]
    session.write(segmentation, written, "liver", mode="replace", segment_id=liver_id)
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, liver_id, volume_node), written)
    assert session.undo() == "replace liver"
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, liver_id, volume_node), labels == 5)
    assert session.undo() == "new spleen (LiteMedSAM)"
    assert result.segment_id not in mrml.segment_names(segmentation)
    assert not session.can_undo and session.undo() == ""


def test_model_status_and_metrics(tmp_path, sample, connection):
    from SegmentationToolsLib.segment_logic import metrics_rows, model_status

    client = ready_client(connection)
    status = {name: (available, message) for name, available, message in model_status(client)}
    assert status["litemedsam"][0] and status["hq_litemedsam"][0]
    assert not status["sam_vit_b"][0] and "sam_vit_b_01ec64.pth" in status["sam_vit_b"][1]

    ct, labels = sample
    scene = mrml.new_scene()
    volume_node = mrml.add_volume_node(scene, ct)
    reference = mrml.add_segmentation_from_labels(scene, labels, volume_node, names={1: "spleen", 2: "kidney_right"})
    ids = {n: s for s, n in mrml.segment_names(reference).items()}
    shifted = np.roll(labels == 1, 2, axis=2)
    predicted = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    predicted_id = mrml.add_segment(predicted, shifted, volume_node, "spleen guess")
    row = metrics_rows(client, volume_node, predicted, [predicted_id], reference, [ids["spleen"]])[0]
    assert row["segment"] == "spleen guess"
    assert row["dice"] == pytest.approx(segment_metrics(shifted, labels == 1)["dice"])
    assert row["hd95_mm"] == pytest.approx(2 * ct.spacing[0], abs=0.5)



def test_fine_tuning_runs_on_the_server_and_registers_a_model_it_then_lists(tmp_path, sample, connection):
    """The panel's fine-tuning: the checked segments are sent, the server tunes HQ-LiteMedSAM, the run's
    metrics come back into the run folder, and the tuned model is one of the server's models."""
    from SegmentationToolsLib.finetune_logic import FinetuneLogic, panel_finetune_config
    from SegmentationToolsLib.segment_logic import model_status

    from vfmlab.segment.config import SegmenterFinetuneConfig
    from vfmlab.weights.registry import user_entries, write_user_entries

    client = ready_client(connection)
    ct, labels = sample
    scene = mrml.new_scene()
    volume_node = mrml.add_volume_node(scene, ct)
    reference = mrml.add_segmentation_from_labels(scene, labels, volume_node, names={1: "spleen", 2: "kidney_right"})
    ids = {n: s for s, n in mrml.segment_names(reference).items()}
    hq_only = SegmenterFinetuneConfig(**panel_finetune_config(3, train_decoder=False))
    whole = SegmenterFinetuneConfig(**panel_finetune_config(3, train_decoder=True))
    assert not hq_only.train_decoder and whole.train_decoder and hq_only.learning_rate > whole.learning_rate
    assert whole.batch_size == 4 and whole.cosine_schedule

    logic = FinetuneLogic(scene, timer_factory=FakeTimers())
    with pytest.raises(InputError, match="at least one segment"):
        logic.start(client, volume_node, reference, [], tmp_path / "run", {})
    empty = reference.GetSegmentation().AddEmptySegment("nothing")
    with pytest.raises(InputError, match="empty"):
        logic.start(client, volume_node, reference, [empty], tmp_path / "run", {})
    config = {**panel_finetune_config(1, train_decoder=False), "max_slices_per_segment": 3, "device": "cpu"}
    done, name = [], "panel_test_tuned"
    try:
        logic.start(client, volume_node, reference, [ids["kidney_right"], ids["spleen"]], tmp_path / "run", config,
                    register_as=name, on_done=lambda state, outcome: done.append((state, outcome)))
        assert wait_for(lambda: logic.timer_factory[-1].fire() or done, timeout=600)
        state, outcome = done[0]
        assert state == "finished", outcome
        assert set(outcome["baseline_dice"]) == {"kidney_right", "spleen"}, "label values follow the checked segments"
        assert outcome["registered_model"] == name
        assert (tmp_path / "run" / "training" / "summary.json").is_file()
        assert not list((tmp_path / "run").rglob("*.pt")), "checkpoints stay on the server"
        assert name in {model for model, available, _ in model_status(client) if available}
    finally:
        write_user_entries([entry for entry in user_entries() if entry.name != name])


def kidney_seed(ct, labels, session):
    """The axial slice with the largest right-kidney area and its box, as the panel's prompt."""
    from vfmlab.mrml.markups import SlicePrompt

    stack = SliceStack.of(ct, "axial")
    kidney = stack.view(labels) == 2
    index = int(np.argmax(kidney.sum(axis=(1, 2))))
    rows, cols = np.nonzero(kidney[index])
    return SlicePrompt("axial", index, (cols.min(), rows.min(), cols.max(), rows.max()), None, None), kidney


def test_propagation_is_followed_by_polling_and_a_cancel_keeps_what_was_reached(segment_session, sample):
    scene, volume_node, session = segment_session
    ct, labels = sample
    prompt, kidney = kidney_seed(ct, labels, session)
    statuses = []
    mask, result = session.compute(prompt, propagate=True, on_status=statuses.append)
    stack = SliceStack.of(ct, "axial")
    score = segment_metrics(stack.view(mask), kidney)["dice"]
    print(f"right kidney propagated through the server from the panel logic: Dice {score:.3f}, slices {result.slices}")
    assert score > 0.7 and result.slices[0] < prompt.index < result.slices[1]
    assert [s["done"] for s in statuses] == sorted(s["done"] for s in statuses) and statuses[-1]["state"] == "finished"
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segment_id = session.write(segmentation, mask, "kidney")
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, segment_id, volume_node), mask)

    operation = session.start_propagation(prompt)
    session.client.cancel_operation(operation)
    ended = session.client.wait_operation(operation)
    assert ended["state"] == "cancelled"
    if ended["has_mask"]:  # the seed slice may have finished before the cancel arrived
        partial, _ = session.propagation_result(operation)
        assert stack.view(partial).sum() <= stack.view(mask).sum()
    encoding = session.encode_ahead("axial", [prompt.index - 1, prompt.index + 1, -5, 10_000])
    assert session.client.wait_operation(encoding)["result"] == {"encoded": 2}


def test_seeds_kept_on_several_slices_propagate_into_one_segment(segment_session, sample):
    """The panel's "Add prompt as seed" at two slices, a prompt placed on a third, then Propagate."""
    from SegmentationToolsLib.segment_logic import SeedPrompts
    from vfmlab.mrml.markups import SlicePrompt

    scene, volume_node, session = segment_session
    ct, labels = sample
    stack = SliceStack.of(ct, "axial")
    kidney = stack.view(labels) == 2
    present = np.flatnonzero(kidney.any(axis=(1, 2)))

    def boxed(index: int) -> SlicePrompt:
        rows, cols = np.nonzero(kidney[index])
        return SlicePrompt("axial", int(index), (cols.min(), rows.min(), cols.max(), rows.max()), None, None)

    seeds = SeedPrompts()
    assert seeds.describe() == "No seeds."
    with pytest.raises(ValueError, match="place a box or points"):
        seeds.with_current(None)
    low, middle, high = (int(present[len(present) * q // 4]) for q in (1, 2, 3))
    seeds.add(boxed(high))
    seeds.add(SlicePrompt("axial", low, (1.0, 1.0, 5.0, 5.0), None, None))
    seeds.add(boxed(low))  # replaces the first prompt on that slice
    assert seeds.describe() == f"2 seeds on axial slices {low}, {high}."
    with pytest.raises(ValueError, match="the seeds so far are on axial slices"):
        seeds.add(SlicePrompt("coronal", 40, (1.0, 1.0, 5.0, 5.0), None, None))
    with pytest.raises(ValueError, match="seeds on axial ones"):
        seeds.with_current(SlicePrompt("sagittal", 40, (1.0, 1.0, 5.0, 5.0), None, None))
    first, more = seeds.with_current(boxed(middle))
    assert [first.index] + [seed.index for seed in more] == [low, middle, high]

    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    result = session.segment(first, segmentation, "kidney from seeds", propagate=True, seeds=more)
    written = stack.view(mrml.segment_mask(segmentation, result.segment_id, volume_node))
    score = segment_metrics(written, kidney)["dice"]
    print(f"right kidney from three seeds through the server: Dice {score:.3f}, slices {result.slices}")
    assert score > 0.85 and result.slices[0] <= present.min() + 1 and result.slices[1] >= present.max() - 1
    assert written[low:high + 1].any(axis=(1, 2)).all(), "every slice between the seeds is filled"
    assert list(mrml.segment_names(segmentation).values()) == ["kidney from seeds"]
    assert session.undo() == "new kidney from seeds"


def test_a_killed_server_is_one_clear_error_then_restarted_and_sent_the_volume_again(tmp_path, sample):
    scene = mrml.new_scene()
    volume_node = mrml.add_volume_node(scene, sample[0], name="CT")
    connection = ServerConnection(folder=tmp_path / "server", options=SERVER_OPTIONS, env={"OMP_NUM_THREADS": "1"})
    try:
        session = SegmentSession(volume_node, ready_client(connection), "litemedsam")
        prompt, kidney = kidney_seed(sample[0], sample[1], session)
        first, _ = session.segment_slice(prompt)
        connection.local.process.kill()
        connection.local.process.wait()
        with pytest.raises(ServerUnavailable, match="does not answer"):
            session.segment_slice(prompt)
        session.client = ready_client(connection)  # what the panel does on its next request
        assert connection.restarts == 1
        again, result = session.segment_slice(prompt)  # the new server lacked the volume: sent again
        np.testing.assert_array_equal(again, first)
        assert result.slices == (prompt.index, prompt.index)
    finally:
        connection.stop()


def test_the_panels_link_keeps_its_settings_and_reports_a_server_that_cannot_start(tmp_path):
    store = SettingsStore()
    link = ModelServerLink(store, sys.executable, tmp_path / "server")
    assert link.settings == ServerSettings() and "starts on first use" in link.describe()
    link.configure(" http://gpu-box:8765 ", "secret")
    assert ServerSettings.load(store) == ServerSettings("http://gpu-box:8765", "secret")
    assert ModelServerLink(store, sys.executable).settings.url == "http://gpu-box:8765"  # kept for the next session
    client = link.client()
    assert (client.url, client.token) == ("http://gpu-box:8765", "secret")

    link.configure("", "")  # back to a local server, which here is given an option it refuses
    link.connection.options = ("--no-such-option",)
    timer = FakeTimer()
    waiter = ClientWaiter(link, timer)
    outcome = []
    waiter.request(outcome.append, lambda message: outcome.append(("failed", message)))
    deadline = time.monotonic() + 60
    while not outcome:
        assert timer.active and time.monotonic() < deadline
        time.sleep(0.1)
        timer.fire()
    assert outcome[0][0] == "failed" and "--no-such-option" in outcome[0][1], outcome
    assert not timer.active
    link.shutdown()


def test_the_waiter_hands_a_client_once_the_local_server_listens(connection):
    ready_client(connection)
    link = ModelServerLink(SettingsStore(), sys.executable, connection_factory=lambda *a, **k: connection)
    timer = FakeTimer()
    clients = []
    ClientWaiter(link, timer).request(clients.append, pytest.fail)
    assert len(clients) == 1 and clients[0].health()["status"] == "ok" and not timer.active

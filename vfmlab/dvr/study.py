"""``vfmlab dvr-study``: which DeepDVR models reach targets that no 1D transfer function can express (paper
Sec. 4.2, Table 2).

The targets are Slicer volume renderings of the volume colourised by a segmentation: every voxel of a
segment takes the segment's colour, every other voxel the intensity preset's colour, and all take the
preset's opacity (an RGBA volume rendered with its own colours, :mod:`vfmlab.mrml.colourised`). Two voxels
of equal intensity in different segments then differ in colour, which a TF of intensity alone cannot
give. Every model trains on the same views (the scalar volume as input) and is scored on held-out ones.

``OUT/captures`` holds the targets, ``OUT/runs/<model>`` the runs (:mod:`vfmlab.runs`), ``OUT/study.json``
per model ``val_ssim`` (best epoch), ``last_val_ssim``, ``val_psnr``, seconds and parameters, and
``OUT/study.png`` the held-out views side by side.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import atomic
from ..cameras import CaptureSet
from ..errors import InputError
from ..progress import Reporting, ScaledReporter, SilentReporter
from ..volume import Volume
from .config import StudyConfig, TrainConfig

CAPTURES, RUNS, STUDY_JSON, STUDY_PNG = "captures", "runs", "study.json", "study.png"


def colourised_rgba(volume: Volume, labels: np.ndarray, colours: dict[int, tuple[float, float, float]],
                    preset: str, shift: float = 0.0) -> np.ndarray:
    """``(K, J, I, 4)`` uint8: segment colour (else the preset's colour at the voxel's intensity), and the
    preset's opacity at that intensity."""
    from ..render.presets import preset_attributes
    from .transfer_functions import PiecewiseTF

    attributes = preset_attributes(preset)
    tf = PiecewiseTF.from_slicer_strings(attributes["colorTransfer"], attributes["scalarOpacity"], shift)
    rgb, opacity = tf.evaluate(volume.array.reshape(-1))
    rgb = rgb.reshape(volume.array.shape + (3,))
    for value, colour in colours.items():
        rgb[labels == value] = colour
    alpha = opacity.reshape(volume.array.shape)[..., None]
    return np.clip(np.round(np.concatenate([rgb, alpha], axis=-1) * 255), 0, 255).astype(np.uint8)


def segment_labels(volume: Volume, segmentation: str | Path) -> tuple[np.ndarray, dict[int, tuple]]:
    """Label values on ``volume``'s grid and their colours, from a ``.seg.nrrd`` or a label map."""
    from .. import mrml
    from ..mrml.segmentations import default_color
    from ..render.capture import load_segment_labels

    scene = mrml.new_scene()
    try:
        node = mrml.add_volume_node(scene, volume, name="volume")
        labels = load_segment_labels(scene, node, segmentation)
    finally:
        scene.Clear(1)
    values = labels.values()
    if not values:
        raise InputError("the segmentation is empty: there is nothing to colourise", segmentation)
    colours = {value: tuple(labels.colors.get(value) or default_color(n)) for n, value in enumerate(values)}
    return labels.array, colours


def capture_colourised(volume: Volume, volume_path: str | Path, rgba: np.ndarray, out_dir: Path,
                       config: StudyConfig, reporter: Reporting) -> CaptureSet:
    """Render the RGBA volume from an orbit with Slicer's CPU ray casting; the capture records the scalar
    volume as the training input."""
    from .. import mrml
    from ..mrml import volume_rendering as vr
    from ..mrml.colourised import add_rgba_volume_node, show_rgba_volume
    from ..render.capture import source_sha256
    from ..render.images import write_rgb_png
    from ..render.poses import Orbit, orbit_records

    out_dir.mkdir(parents=True, exist_ok=True)
    records = orbit_records(volume, Orbit(views=config.views, elevation=config.elevation), config.size, config.size)
    scene = mrml.new_scene()
    logic = vr.volume_rendering_logic(scene)
    view = None
    try:
        display = show_rgba_volume(logic, add_rgba_volume_node(scene, volume, rgba))
        view = vr.HeadlessThreeDView(scene, config.size, config.size)
        for index, record in enumerate(records):
            reporter.progress(index / len(records), f"rendering target view {index + 1}/{len(records)}")
            write_rgb_png(out_dir / record.image, view.render(record))
        capture = CaptureSet(
            views=records, volume_path=str(Path(volume_path).resolve()),
            volume_sha256=source_sha256(Path(volume_path)),
            ijk_to_ras=volume.ijk_to_ras.tolist(), transfer_function={"preset": config.preset, "shift": config.shift},
            sample_distance=float(display.GetSampleDistance()),
            # not "slicer-volume-rendering": the scalar TF's ray lattice does not describe these renders
            renderer={"name": "slicer-volume-rendering-colourised", "method": "cpu",
                      "display_node": display.GetClassName(), "volume_shape_ijk": list(volume.shape_ijk)})
        capture.save(out_dir)
        return capture
    finally:
        if view is not None:
            view.close()
        logic.SetMRMLScene(None)
        scene.Clear(1)


def train_config(config: StudyConfig, captures: Path, model: str) -> TrainConfig:
    return TrainConfig(captures=str(captures), model=model, size=config.model_size, epochs=config.epochs,
                       batch_size=config.batch_size, s_high=config.s_high, validation_every=config.validation_every,
                       seed=config.seed, threads=config.threads)


def score_run(run_dir: Path, summary: dict) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """A trained run's numbers and its best checkpoint's held-out renders beside their targets."""
    from .inference import TrainedRun

    run = TrainedRun.load(run_dir)
    data = run.training_set()
    _, held_out = data.split(run.config.validation_every)
    renders = run.render(data.volume, [data.views[i] for i in held_out], background=data.capture.background)
    targets = [data.images[i] for i in held_out]
    psnr = [10 * np.log10(1.0 / max(float(np.mean((r - t) ** 2)), 1e-12)) for r, t in zip(renders, targets)]
    numbers = {"val_ssim": summary["best_val_ssim"], "last_val_ssim": summary["last_val_ssim"],
               "val_psnr": float(np.mean(psnr)), "seconds": summary["seconds"], "epochs": summary["epoch"],
               "parameters": int(sum(p.numel() for p in run.model.parameters())), "held_out_views": len(held_out)}
    return numbers, renders, targets


def run_study(volume_path: str | Path, segmentation: str | Path, out_dir: str | Path,
              config: StudyConfig | None = None, reporter: Reporting | None = None) -> dict:
    """Targets, one run per model, ``study.json`` and ``study.png``; returns the study record."""
    from ..volume_io import read_volume
    from .models import model_names
    from .train import train

    config, reporter = config or StudyConfig(), reporter or SilentReporter()
    unknown = [m for m in config.models if m not in model_names()]
    if unknown or not config.models:
        raise InputError(f"unknown or no DeepDVR models {unknown}; choose from {', '.join(model_names())}")
    out_dir = Path(out_dir)
    volume = read_volume(volume_path)
    labels, colours = segment_labels(volume, segmentation)
    rgba = colourised_rgba(volume, labels, colours, config.preset, config.shift)
    share = 1.0 / (len(config.models) + 1)
    capture_colourised(volume, volume_path, rgba, out_dir / CAPTURES, config, ScaledReporter(reporter, 0, share, "targets"))
    results, pictures = {}, {}
    for n, model in enumerate(config.models):
        part = ScaledReporter(reporter, share * (n + 1), share, model)
        summary = train(train_config(config, out_dir / CAPTURES, model), out_dir / RUNS / model, part)
        results[model], pictures[model], targets = score_run(out_dir / RUNS / model, summary)
    record = {"volume": str(volume_path), "segmentation": str(segmentation),
              "config": {**asdict(config), "models": list(config.models)},
              "segments": {str(k): list(v) for k, v in colours.items()}, "models": results}
    atomic.write_json(out_dir / STUDY_JSON, record)
    write_comparison(out_dir / STUDY_PNG, targets, pictures, results)
    reporter.progress(1.0, "study written")
    return record


def write_comparison(path: Path, targets: list[np.ndarray], pictures: dict[str, list[np.ndarray]],
                     results: dict[str, dict]) -> Path:
    """Rows: held-out views; columns: the target, then each model's render with its SSIM and PSNR."""
    from matplotlib.figure import Figure

    rows, columns = len(targets), 1 + len(pictures)
    figure = Figure(figsize=(1.8 * columns, 1.8 * rows + 0.4), dpi=100)
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    for row, target in enumerate(targets):
        images = [("target (Slicer)", target)] + [(name, renders[row]) for name, renders in pictures.items()]
        for column, (name, image) in enumerate(images):
            axes[row, column].imshow(np.clip(image, 0, 1))
            axes[row, column].set_axis_off()
            if row == 0:
                numbers = results.get(name)
                title = name if numbers is None else f"{name}\nSSIM {numbers['val_ssim']:.3f}, {numbers['val_psnr']:.1f} dB"
                axes[row, column].set_title(title, fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return path


"""Demo stage: learn CT-AAA back from Slicer captures of the sample CT (paper Sec. 4.1, TF reconstruction).

Slicer's volume rendering renders an orbit of unshaded CT-AAA views (the probes stage's captures are
shaded, which a transfer function cannot reproduce); a 256-entry lookup TF trains on them with
stepsize annealing; the learned TF goes through Slicer's volume rendering again and is scored
against held-out captures. ``--fast``: fewer and smaller views, fewer epochs.
"""
from __future__ import annotations

import numpy as np

from ..atomic import write_json

PRESET = "CT-AAA"
VIEWS, SIZE, EPOCHS = 16, 96, 20
FAST_VIEWS, FAST_SIZE, FAST_EPOCHS = 10, 64, 12
SSIM_CHECK = 0.9  # measured 0.95-0.97 (full) on this machine; the check leaves room for --fast


def run(ctx) -> None:
    from ..mrml.volume_rendering import remove_volume_renderings
    from ..render.capture import RenderSettings, capture_views
    from ..render.poses import Orbit, orbit_records
    from .captures import write_image
    from .checkpoints import dvr_run
    from .inference import TrainedRun, slicer_rerender_ssim
    from .train import TrainConfig, train

    views, size, epochs = (FAST_VIEWS, FAST_SIZE, FAST_EPOCHS) if ctx.fast else (VIEWS, SIZE, EPOCHS)
    folder = ctx.staging / "deepdvr"
    ctx.step(f"DeepDVR: capturing {views} unshaded {PRESET} views")
    records = orbit_records(ctx.volume, Orbit(views=views, elevation=20.0), size, size)
    capture_views(ctx.scene, ctx.volume_node, records, folder / "captures",
                  RenderSettings(preset=PRESET, width=size, height=size, shading=False),
                  source_path=ctx.inputs.volume)
    remove_volume_renderings(ctx.volume_node)  # the demo's saved scene holds data only (as the probes stage)

    ctx.step(f"DeepDVR: training a lookup TF for {epochs} epochs")
    config = TrainConfig(captures=str(folder / "captures"), model="lookup", epochs=epochs, batch_size=2,
                         s_low=0.1, s_high=2.0)
    result = train(config, folder / "run")
    metrics = dvr_run(folder / "run").metrics()

    ctx.step("DeepDVR: re-rendering the learned TF in Slicer")
    run_ = TrainedRun.load(folder / "run")
    data = run_.training_set()
    _, held_out = data.split(config.validation_every)
    scores, rerenders = slicer_rerender_ssim(run_.learned_tf(), data, held_out)
    ours = run_.render(data.volume, [data.views[held_out[0]]], size, background=data.capture.background)[0]
    side_by_side = np.concatenate([data.images[held_out[0]], ours, rerenders[0]], axis=1)
    figure = write_image(folder / "comparison.png", side_by_side.repeat(2, axis=0).repeat(2, axis=1))
    curves = _tf_figure(run_, data, folder / "transfer_function.png")

    report = ctx.report
    report.heading("DeepDVR: a transfer function learned from views")
    report.paragraph(
        f"{views} views of the volume rendered by Slicer with the {PRESET} preset (no shading); every "
        f"{config.validation_every}th view held out. A 256-entry lookup TF trained for {epochs} epochs "
        f"(loss MSE + 1 - SSIM, Adam, stepsize annealing s = {config.s_low} to {config.s_high}) in "
        f"{sum(m['seconds'] for m in metrics):.1f} s; the learned TF was then rendered by Slicer's own "
        f"volume rendering. The TF is in deepdvr/run/learned_tf.vp (Volume Rendering module: load it as a "
        f"volume property).")
    report.table(["epoch", "sampling rate", "train loss", "validation SSIM", "seconds"],
                 [[m["epoch"], m["sampling_rate"], m["train_loss"], m["val_ssim"], m["seconds"]]
                  for m in metrics if m["epoch"] in (1, 2, epochs // 2, epochs) or m["epoch"] % 5 == 0])
    report.table(["held-out view", "SSIM of Slicer's re-render vs capture"],
                 [[data.views[i].image, s] for i, s in zip(held_out, scores)])
    report.image(figure, "Held-out view: Slicer capture with CT-AAA | the learned TF rendered by DeepDVR | "
                 "the learned TF rendered by Slicer", ctx.staging)
    report.image(curves, f"Learned TF (solid) and {PRESET} (dashed) over the CT's HU range", ctx.staging)

    ctx.summary["dvr"] = {"preset": PRESET, "views": views, "image_size": size, "epochs": epochs,
                          "best_val_ssim": result["best_val_ssim"],
                          "train_seconds": sum(m["seconds"] for m in metrics),
                          "slicer_rerender_ssim": dict(zip([data.views[i].image for i in held_out], scores)),
                          "transfer_function": "deepdvr/run/learned_tf.vp"}
    write_json(folder / "summary.json", ctx.summary["dvr"])
    ctx.checks[f"DeepDVR: learned TF re-rendered by Slicer matches held-out captures (SSIM >= {SSIM_CHECK})"] = \
        bool(min(scores) >= SSIM_CHECK)


def _tf_figure(run, data, path):
    """Opacity curves of the learned TF and the preset, and their colours as strips underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .transfer_functions import PiecewiseTF

    learned, preset = run.learned_tf(), PiecewiseTF.from_dict(data.capture.transfer_function)
    values = np.linspace(-200.0, 1000.0, 600)
    figure, (curves, strips) = plt.subplots(2, 1, figsize=(8, 3.6), dpi=100, height_ratios=[3, 1], sharex=True)
    strip_rows = []
    for tf, style, label in ((learned, "-", "learned"), (preset, "--", PRESET)):
        colors, opacity = tf.evaluate(values)
        curves.plot(values, opacity, style, color="black", label=label)
        strip_rows.append(np.clip(colors, 0, 1))
    curves.set_ylabel("opacity per mm")
    curves.legend(loc="lower right")
    strips.imshow(np.stack(strip_rows), aspect="auto", extent=(values[0], values[-1], 1.5, -0.5))
    strips.set_yticks([0, 1], ["learned", PRESET])
    strips.set_xlabel("scalar (HU)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path

"""Training DeepDVR models from captured views (paper Sec. 3.5, 4): loss MSE + (1 - SSIM), Adam
(β = 0.9, 0.99), stepsize annealing ``s(e) = s_l (1 - (e/E)^2) + (e/E)^2 s_h`` (e = 1..E), optional ray
jitter, the best-validation-SSIM checkpoint kept, atomic checkpoints, resume from the last one.

Runs in-process (CLI), as the ``dvr-train`` background job (:mod:`vfmlab.jobs`), or data-parallel
under ``torchrun`` (``python -m torch.distributed.run --nproc_per_node N -m vfmlab.dvr.train
RUN_DIR``: DDP over gloo on CPU, nccl on GPU; each global batch is split evenly over the processes,
so a run equals a single-process run with the same global batch).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pytorch_msssim import ssim

from .. import atomic
from ..devices import resolve_device
from ..errors import InputError
from ..progress import Reporting, SilentReporter
from ..runs import seconds_to_reach
from .captures import TrainingSet, load_training_set, write_image
from .checkpoints import BEST, LAST, PREVIEWS, PRODUCTS, TF_JSON, TF_VP, dvr_run, load_checkpoint
from .config import DEFAULT_S_HIGH, TrainConfig
from .models import RenderOptions, VolumeInput, build_model, config_dict, model_config
from .transfer_functions import ScalarDomain

SSIM_TARGETS = (0.90, 0.95)  # validation SSIM levels whose time to reach a run's summary reports


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (no-op when alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def _all_reduce_sum(values: list[float], dist_info: Distributed, device) -> list[float]:
    if dist_info.world == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def image_ssim(prediction: torch.Tensor, target: torch.Tensor, size_average: bool = True) -> torch.Tensor:
    """SSIM (pytorch_msssim, Gaussian window 11, or the largest odd window the image holds)."""
    window = min(11, min(prediction.shape[-2:]) - (1 - min(prediction.shape[-2:]) % 2))
    return ssim(prediction, target, data_range=1.0, size_average=size_average, win_size=max(window, 3))


def loss_fn(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 15: MSE + (1 - SSIM)."""
    return torch.mean((prediction - target) ** 2) + (1.0 - image_ssim(prediction, target))


def view_seed(seed: int, epoch: int, view: int) -> int:
    """Jitter seed of one view in one epoch, independent of batch and process."""
    return (seed * 1_000_003 + epoch * 10_007 + view) % (2**31)


class Trainer:
    """One run: model, optimiser, data; :meth:`run_epochs` trains from the last checkpoint to the last epoch."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, reporter: Reporting | None = None,
                 device: str | None = None):
        self.config = config
        self.run = dvr_run(run_dir)
        self.reporter = reporter or SilentReporter()
        self.device = resolve_device(device)
        self.dist = _init_distributed(self.device)
        torch.set_num_threads(max(1, config.threads))
        torch.manual_seed(config.seed)
        self.data: TrainingSet = load_training_set(config.captures, config.volume, config.targets)
        self.train_views, self.validation_views = self.data.split(config.validation_every)
        self.width, self.height = self.data.size_for(config.image_size or self.data.views[0].height)
        self.domain = ScalarDomain.of(self.data.volume.array)
        self.volume = VolumeInput.of(self.data.volume, self.domain, self.data.capture.background).to(self.device)
        self.model_settings = config_dict(model_config(config.model, config.size, **config.model_settings))
        self.model = build_model(config.model, self.model_settings).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, betas=(0.9, 0.99))
        self.epoch = 0
        self.best_ssim = -1.0
        self.network = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(self.model)
            self._share_ray_lattice()

    def _share_ray_lattice(self) -> None:
        """Rank 0 alone runs the offscreen VTK render that finds the captures' ray lattice; the others
        receive it, so only one process per run opens an OpenGL context."""
        import torch.distributed as dist

        shared = [self.data.ray_lattice() if self.dist.main else None]
        dist.broadcast_object_list(shared, src=0)
        self.data.use_ray_lattice(shared[0])

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.config.model, "model_settings": self.model_settings,
                "model_state": self.model.state_dict(), "optimizer_state": self.optimizer.state_dict(),
                "epoch": self.epoch, "best_ssim": self.best_ssim,
                "domain": [self.domain.low, self.domain.high], "train_config": asdict(self.config)}

    def resume(self) -> None:
        """Continue from ``last.pt`` (a run without one starts from scratch)."""
        if not self.run.file(LAST).is_file():
            return
        state = load_checkpoint(self.run, LAST)
        if state["model"] != self.config.model:
            raise InputError(f"holds a {state['model']!r} model, not {self.config.model!r}", self.run.file(LAST))
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.epoch, self.best_ssim = int(state["epoch"]), float(state["best_ssim"])
        if self.dist.main:
            self.run.keep_metrics_through(self.epoch)

    # -- training --------------------------------------------------------------------------------
    def run_epochs(self, should_stop: Callable[[], bool] = lambda: False) -> dict:
        """Train until the last epoch or a stop request (checked between batches; the epoch is dropped)."""
        stopped = False
        while self.epoch < self.config.epochs and not stopped:
            started = time.perf_counter()
            epoch = self.epoch + 1
            rate = self.config.sampling_rate(epoch, self.renderer_rate())
            train_loss, stopped = self._train_epoch(epoch, rate, should_stop)
            if stopped:
                break
            val_ssim = self.validate()
            self.epoch = epoch
            self._record_epoch(epoch, rate, train_loss, val_ssim, time.perf_counter() - started)
        if self.dist.main and self.config.model == "lookup" and self.run.file(BEST).is_file():
            export_lookup_tf(self.run.path)
        rows = self.run.metrics()
        summary = {"epoch": self.epoch, "epochs": self.config.epochs, "best_val_ssim": self.best_ssim,
                   "last_val_ssim": rows[-1]["val_ssim"] if rows else None,
                   "seconds": sum(row.get("seconds", 0.0) for row in rows),
                   "seconds_to_val_ssim": {str(t): seconds_to_reach(rows, "val_ssim", t) for t in SSIM_TARGETS},
                   "stopped": stopped, "run_dir": str(self.run.path)}
        if self.dist.main:
            self.run.write_summary(summary)
        return summary

    def _train_epoch(self, epoch: int, rate: float, should_stop) -> tuple[float, bool]:
        self.model.train()
        options = RenderOptions(sampling_rate=rate, jitter=self.config.jitter, chunk_steps=self.config.chunk_steps)
        # Without jitter, samples sit where the captures' renderer put its samples (if known).
        lattice = None if self.config.jitter else self.data.ray_lattice()
        order = np.random.default_rng([self.config.seed, epoch]).permutation(self.train_views).tolist()
        size, world = self.config.batch_size, self.dist.world
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        # Every process needs an equal share of a batch, or the gradient average is not the global mean.
        batches = [b for b in batches if len(b) % world == 0] or [order[: world * max(1, len(order) // world)]]
        total, count = 0.0, 0
        for batch in batches:
            stop = float(should_stop())
            if _all_reduce_sum([stop], self.dist, self.device)[0] > 0:
                return float("nan"), True
            local = batch[self.dist.rank :: world]
            anchors = None if lattice is None else [lattice.near[i] for i in local]
            prediction = self.network(self.volume, [self.data.views[i] for i in local], self.width, self.height,
                                      options, seeds=[view_seed(self.config.seed, epoch, i) for i in local],
                                      anchors=anchors)
            loss = loss_fn(prediction, self.data.targets(local, self.width, self.height).to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(local)
            count += len(local)
        total, count = _all_reduce_sum([total, float(count)], self.dist, self.device)
        return total / max(count, 1), False

    def renderer_rate(self) -> float | None:
        """Samples per voxel of the captures' renderer, when known."""
        lattice = self.data.ray_lattice()
        return None if lattice is None else self.volume.grid.voxel_size / lattice.sample_distance

    def validation_setup(self) -> tuple[RenderOptions, tuple[int, int], list | None]:
        """Render options, size and per-view anchors of validation renders.

        By default they sample as the captures' renderer did (its sample distance, its sample
        positions; :meth:`TrainingSet.ray_lattice`) at the captured size, so validation SSIM is what
        the learned model scores against those renders; ``validation_sampling_rate`` overrides.
        """
        size = self.data.size_for(self.config.validation_size or self.data.views[0].height)
        lattice = None if self.config.validation_sampling_rate else self.data.ray_lattice()
        if lattice is not None:
            options = RenderOptions(sample_distance=lattice.sample_distance, chunk_steps=self.config.chunk_steps)
            return options, size, list(lattice.near)
        rate = self.config.validation_sampling_rate or self.config.s_high or DEFAULT_S_HIGH
        return RenderOptions(sampling_rate=rate, chunk_steps=self.config.chunk_steps), size, None

    @torch.no_grad()
    def validate(self) -> float:
        """Mean SSIM of the validation views rendered without jitter (see :meth:`validation_setup`)."""
        self.model.eval()
        options, (width, height), anchors = self.validation_setup()
        local = self.validation_views[self.dist.rank :: self.dist.world]
        total = 0.0
        for index in local:
            prediction = self.model.render(self.volume, [self.data.views[index]], width, height, options,
                                           anchors=None if anchors is None else [anchors[index]])
            target = self.data.targets([index], width, height).to(self.device)
            total += float(image_ssim(prediction.clamp(0, 1), target))
        total, count = _all_reduce_sum([total, float(len(local))], self.dist, self.device)
        return total / max(count, 1)

    def _record_epoch(self, epoch: int, rate: float, train_loss: float, val_ssim: float, seconds: float) -> None:
        if not self.dist.main:
            return
        improved = val_ssim > self.best_ssim
        self.best_ssim = max(self.best_ssim, val_ssim)
        state = self.state()
        checkpoints = {BEST: state, LAST: state} if improved else {LAST: state}
        row = {"step": epoch, "epoch": epoch, "train_loss": train_loss, "val_ssim": val_ssim, "sampling_rate": rate,
               "seconds": seconds}
        self.reporter.artifact("preview", self._write_preview(epoch))
        self.run.record_epoch(row, self.reporter, epoch / self.config.epochs,
                              f"epoch {epoch}/{self.config.epochs}: loss {train_loss:.4f}, "
                              f"val SSIM {val_ssim:.4f}, s={rate:.2f}", checkpoints)

    @torch.no_grad()
    def _write_preview(self, epoch: int) -> Path:
        """Prediction beside its target for the first validation view."""
        index = self.validation_views[0]
        options, (width, height), anchors = self.validation_setup()
        prediction = self.model.render(self.volume, [self.data.views[index]], width, height, options,
                                       anchors=None if anchors is None else [anchors[index]])
        target = self.data.targets([index], width, height)
        pair = torch.cat([prediction.cpu().clamp(0, 1), target], dim=3)[0].permute(1, 2, 0).numpy()
        self.run.file(PREVIEWS).mkdir(parents=True, exist_ok=True)
        return write_image(self.run.file(PREVIEWS) / f"epoch_{epoch:04d}.png", pair)


def export_lookup_tf(run_dir: str | Path, checkpoint: str = BEST) -> dict:
    """Write the lookup model's learned TF as ``transfer_function.json`` and a Slicer ``.vp`` file."""
    from ..mrml.transfer_functions import write_vp_file

    run = dvr_run(run_dir)
    tf = learned_tf(load_checkpoint(run, checkpoint))
    data = {**tf.to_dict(), "source": str(run.file(checkpoint))}
    atomic.write_json(run.file(TF_JSON), data)
    write_vp_file(tf, run.file(TF_VP))
    return data


def learned_tf(state: dict):
    """The :class:`PiecewiseTF` of a lookup-model checkpoint."""
    if state["model"] != "lookup":
        raise InputError(f"only a lookup model has a transfer function to export; this run trained {state['model']!r}")
    model = build_model("lookup", state["model_settings"])
    model.load_state_dict(state["model_state"])
    return model.piecewise_tf(ScalarDomain(*state["domain"]))


def train(config: TrainConfig | None, run_dir: str | Path, reporter: Reporting | None = None, resume: bool = False,
          device: str | None = None) -> dict:
    """Start (or with ``resume``, continue) the run in ``run_dir``; stops early if ``run_dir/STOP`` appears.

    ``config`` None means the run's stored config (resume); a resumed run may change settings (more
    epochs). ``reporter`` receives each epoch's metrics and the run's progress (:mod:`vfmlab.runs`).
    """
    run = dvr_run(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = TrainConfig.from_dict(run.read_config())
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(config, run.path, reporter, device)
        if trainer.dist.main:
            run.begin(asdict(config), resume, products=PRODUCTS)
        if resume:
            trainer.resume()
        return trainer.run_epochs(run.stop_requested)
    finally:
        torch.set_num_threads(threads)  # the run's thread count must not outlive it in a host process


def main(argv: list[str] | None = None) -> int:
    """``python -m vfmlab.dvr.train RUN_DIR [--resume]``: train the run whose config.json is in RUN_DIR
    (the entry point for torchrun)."""
    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    result = train(None, run_dir, resume="--resume" in args)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no rank leaves while rank 0 still writes the run's last files
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

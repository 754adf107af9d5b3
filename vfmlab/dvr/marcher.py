"""Differentiable emission-absorption ray marching (DeepDVR's DVR unit), front to back, in chunks.

Samples lie at ``t_i = t_near + (i + u) Δt`` along each ray (``u = 0``, or ``u ~ U(0, 1)`` per ray
with jitter: the paper's ``t_o ~ U(0, Δt)``). A field classifies each sample into an emission
``c`` (any number of channels) and an absorption coefficient ``κ`` per unit distance ``d_u``; then

    A_i = 1 - exp(-κ_i Δt / d_u)                                  (paper Eq. 3 / 11)
    C_i = c_i Δt / d_u        emission "dt"    (paper Eq. 2 / 10)
    C_i = c_i A_i             emission "alpha" (VTK's compositing: colour weighted by sample opacity)
    C' += T_i C_i,  T_i = Π_{j<i} (1 - A_j)                      (Eq. 5-6, written with T = 1 - A')

``κ`` per ``d_u`` is VTK's convention (``vtkVolumeProperty``'s scalar opacity unit distance): a
scalar opacity ``α`` given per ``d_u`` is ``κ = -ln(1 - α)``, and ``A_i`` above is exactly VTK's
opacity correction ``1 - (1 - α)^(Δt / d_u)``. With emission "alpha" the composite is VTK's, so a
transfer function learned here renders the same in Slicer's ray casters.

Memory stays bounded: rays are marched ``chunk_steps`` samples at a time, each chunk under
``torch.utils.checkpoint`` (its samples are recomputed in backward; only per-ray colour and
transmittance are kept between chunks), rays leave the active set once their transmittance is
negligible, and rays are processed in batches of ``ray_batch``. At inference a field may report
cells that cannot absorb or emit (empty space, from its transfer function): samples there are never
classified. No library offers this marcher for arbitrary torch fields, hence it is written here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch.utils.checkpoint import checkpoint

from .empty_space import EmptySpace
from .geometry import RayBatch

Emission = Literal["alpha", "dt"]


class Field(Protocol):
    """What the marcher samples: ``classify`` maps grid points ``(N, 3)`` to emission ``(N, C)`` and κ ``(N,)``."""

    channels: int

    def classify(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def occupancy(self, emission: Emission) -> torch.Tensor | None:
        """Bool per grid cell ``(K-1, J-1, I-1)``: where samples may absorb or emit; None if unknown."""
        ...


@dataclass(frozen=True)
class MarchSettings:
    """How rays are sampled and composited; ``step`` is Δt in mm."""

    step: float
    unit_distance: float = 1.0  # d_u in mm: κ and emission are per this distance (VTK: 1 mm)
    emission: Emission = "alpha"
    jitter: bool = False
    chunk_steps: int = 32
    min_transmittance: float = 1e-3  # rays stop below it: what could follow is under 8-bit image precision
    ray_batch: int = 1 << 16
    use_checkpoint: bool = True
    skip_empty: bool = True  # only when no gradient is needed: skipped samples pass no gradient


@dataclass
class Composite:
    """Per ray: composited emission ``color`` ``(R, C)`` and opacity ``alpha`` ``(R,)`` (``A'``)."""

    color: torch.Tensor
    alpha: torch.Tensor


def sample_offsets(n_rays: int, jitter: bool, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-ray offset ``u`` in units of Δt: 0, or U(0, 1) with jitter."""
    if not jitter:
        return torch.zeros(n_rays, dtype=dtype)
    return torch.rand(n_rays, generator=generator, dtype=dtype)


def empty_space_of(field, settings: MarchSettings) -> EmptySpace | None:
    """The field's empty space for ``settings``, or None when it reports none (build once per TF, reuse)."""
    cells = field.occupancy(settings.emission)
    return None if cells is None else EmptySpace.from_cells(cells)


def march(field, rays: RayBatch, settings: MarchSettings, offsets: torch.Tensor | None = None,
          empty_space: EmptySpace | None = None) -> Composite:
    """Composite ``field`` along every ray; differentiable w.r.t. the field's parameters and inputs.

    Empty space is skipped only with ``settings.skip_empty`` and gradients off (skipped samples
    pass no gradient, so a TF could never learn to make them visible).
    """
    if offsets is None:
        offsets = sample_offsets(len(rays), settings.jitter, dtype=rays.origins.dtype)
    skipping = settings.skip_empty and not torch.is_grad_enabled()
    if skipping and empty_space is None:
        empty_space = empty_space_of(field, settings)
    if not skipping:
        empty_space = None
    colors, alphas = [], []
    for start in range(0, max(len(rays), 1), settings.ray_batch):
        part = slice(start, start + settings.ray_batch)
        result = _march_batch(field, rays.select(part), offsets[part].to(rays.origins), settings, empty_space)
        colors.append(result.color)
        alphas.append(result.alpha)
    return Composite(torch.cat(colors), torch.cat(alphas))


def _march_batch(field, rays: RayBatch, offsets: torch.Tensor, settings: MarchSettings,
                 space: EmptySpace | None) -> Composite:
    n_rays = len(rays)
    step = settings.step
    starts = rays.t_near + offsets * step
    # Samples i = 0 .. n-1 with t_i <= t_far.
    counts = torch.floor((rays.t_far - starts) / step).to(torch.int64) + 1
    counts = torch.where(rays.t_far >= starts, counts, torch.zeros_like(counts))
    next_sample = torch.zeros_like(counts)
    color = rays.origins.new_zeros(n_rays, field.channels)
    log_transmittance = rays.origins.new_zeros(n_rays)
    log_threshold = math.log(settings.min_transmittance) if settings.min_transmittance > 0 else -math.inf
    active = torch.nonzero(counts > 0).squeeze(1)
    while active.numel():
        if space is not None:
            next_sample[active] = space.skip(rays.origins[active], rays.directions[active], starts[active],
                                             next_sample[active], step)
            active = active[next_sample[active] < counts[active]]
            if not active.numel():
                break
        first = next_sample[active]
        args = (rays.origins[active], rays.directions[active], starts[active], first, counts[active] - first)
        if settings.use_checkpoint and torch.is_grad_enabled():
            chunk_color, chunk_log_t = checkpoint(_march_chunk, field, *args, settings, space, use_reentrant=False)
        else:
            chunk_color, chunk_log_t = _march_chunk(field, *args, settings, space)
        entering = torch.exp(log_transmittance[active]).unsqueeze(1)
        color = color.index_add(0, active, entering * chunk_color)
        log_transmittance = log_transmittance.index_add(0, active, chunk_log_t)
        next_sample[active] += settings.chunk_steps
        with torch.no_grad():
            keep = (counts[active] > next_sample[active]) & (log_transmittance[active] > log_threshold)
        active = active[keep]
    return Composite(color, 1.0 - torch.exp(log_transmittance))


def _march_chunk(field, origins, directions, starts, first, remaining, settings: MarchSettings,
                 space: EmptySpace | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``first .. first + chunk_steps - 1`` of each ray: (emission, log transmittance) of the chunk.

    The emission is relative to the chunk's entry (the caller multiplies by the transmittance so far).
    """
    n_rays, steps = origins.shape[0], settings.chunk_steps
    index = torch.arange(steps, dtype=origins.dtype, device=origins.device)
    t = starts.unsqueeze(1) + (index + first.unsqueeze(1).to(origins.dtype)) * settings.step
    points = origins.unsqueeze(1) + t.unsqueeze(2) * directions.unsqueeze(1)
    valid = index.unsqueeze(0) < remaining.unsqueeze(1)
    if space is not None:
        valid &= space.occupied(points)
    samples = torch.nonzero(valid.reshape(-1)).squeeze(1)
    emission, kappa = field.classify(points.reshape(-1, 3)[samples])
    scale = settings.step / settings.unit_distance
    log_attenuation = origins.new_zeros(n_rays * steps).index_put((samples,), -kappa * scale)
    log_attenuation = log_attenuation.view(n_rays, steps)
    # Exclusive cumulative sum: transmittance in front of each sample, within the chunk.
    transmittance = torch.exp(torch.cumsum(log_attenuation, dim=1) - log_attenuation)
    if settings.emission == "alpha":
        weight = transmittance * -torch.expm1(log_attenuation)
    else:
        weight = transmittance * scale
    weighted = weight.reshape(-1)[samples].unsqueeze(1) * emission
    rays_of_samples = torch.div(samples, steps, rounding_mode="floor")
    chunk_color = origins.new_zeros(n_rays, emission.shape[1]).index_add(0, rays_of_samples, weighted)
    return chunk_color, log_attenuation.sum(dim=1)

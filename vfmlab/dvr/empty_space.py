"""Empty-space skipping for the marcher: which cells matter, and how far a ray may jump.

A field reports, per grid cell, whether any sample inside it can absorb (or emit); for a scalar TF
that follows from the cell's corner values and the TF (see :class:`vfmlab.dvr.fields.ScalarField`).
Cells are grouped into bricks of ``brick`` cells a side, and each brick stores its Chebyshev distance
``D`` (in bricks, capped) to the nearest occupied brick: the cube of bricks within ``D - 1`` of it is
empty, so a ray there jumps to where it leaves that cube, rounded up to its next sample. Skipped
samples are exactly samples that would have contributed nothing, so the image is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class EmptySpace:
    """Cell occupancy ``(K-1, J-1, I-1)`` plus brick distances; all lookups take grid points ``(..., 3)``."""

    cells: torch.Tensor
    brick_distance: torch.Tensor  # (bk, bj, bi) int64, 0 where the brick holds an occupied cell
    brick: int

    @classmethod
    def from_cells(cls, cells: torch.Tensor, brick: int = 4, max_distance: int = 16) -> "EmptySpace":
        occupied = F.max_pool3d(cells[None, None].float(), brick, stride=brick, ceil_mode=True)
        distance = torch.zeros_like(occupied)
        reached = occupied
        for _ in range(max_distance):
            distance += 1.0 - reached
            if bool(reached.all()):
                break
            reached = F.max_pool3d(reached, 3, stride=1, padding=1)
        return cls(cells, distance[0, 0].to(torch.int64), brick)

    def occupied(self, points: torch.Tensor) -> torch.Tensor:
        """Whether each point lies in an occupied cell."""
        ck, cj, ci = self.cells.shape
        index = _cell_index(points, (ci, cj, ck), 1)
        return self.cells.reshape(-1)[(index[..., 2] * cj + index[..., 1]) * ci + index[..., 0]]

    def skip(self, origins: torch.Tensor, directions: torch.Tensor, starts: torch.Tensor,
             sample_index: torch.Tensor, step: float, max_jumps: int = 8) -> torch.Tensor:
        """Index of each ray's first sample at or after ``sample_index`` that is not in skippable space."""
        ck, cj, ci = self.cells.shape
        bk, bj, bi = self.brick_distance.shape
        brick_size = torch.tensor([2.0 * self.brick / max(c, 1) for c in (ci, cj, ck)],
                                  dtype=origins.dtype, device=origins.device)
        counts = torch.tensor([bi, bj, bk], device=origins.device)
        flat = self.brick_distance.reshape(-1)
        # Per axis: the face of the empty cube a ray leaves through (+D going up, -D + 1 going down);
        # axes the ray runs parallel to have no exit (infinite t).
        upward = directions > 0
        parallel = directions == 0
        infinity = torch.full_like(directions, float("inf"))
        index = sample_index.clone()
        for _ in range(max_jumps):
            t = starts + index.to(origins.dtype) * step
            brick = _cell_index(origins + t.unsqueeze(1) * directions, (ci, cj, ck), self.brick)
            distance = flat[(brick[:, 2] * bj + brick[:, 1]) * bi + brick[:, 0]]
            if not bool((distance > 0).any()):
                break
            reach = distance.unsqueeze(1)
            face = torch.where(upward, brick + reach, brick - reach + 1).clamp_(min=0).minimum(counts)
            t_axis = (face.to(origins.dtype) * brick_size - 1.0 - origins) / directions
            t_exit = torch.where(parallel, infinity, t_axis).amin(dim=1)
            target = torch.ceil((t_exit - starts) / step).clamp_(max=2**40).to(index.dtype)
            index = torch.where(distance > 0, torch.maximum(index, target), index)
        return index


def _cell_index(points: torch.Tensor, cells: tuple[int, int, int], group: int) -> torch.Tensor:
    """Integer (i, j, k) of the cell, or of the brick of ``group`` cells a side, holding each grid point.

    ``cells`` counts the grid's cells along I, J, K across [-1, 1]; the last brick may be partial.
    """
    scale = torch.tensor([c / 2.0 for c in cells], dtype=points.dtype, device=points.device)
    index = ((points + 1.0) * scale).floor_().to(torch.int64)
    if group > 1:
        index = torch.div(index, group, rounding_mode="floor")
    limit = torch.tensor([-(-c // group) - 1 for c in cells], device=points.device)
    return index.clamp_(min=0).minimum(limit)

"""VNet from monai's own blocks, with the width and number of levels configurable.

``VNet3D(base_width=16, depth=4)`` is exactly ``monai.networks.nets.VNet`` (same blocks, same
parameter count: 45.6 M with 4 outputs, the paper's VNET4-4); ``depth=3`` is the paper's
"VNetLight" (one level less); smaller widths make CPU-sized models. Two departures from monai's
class, both because DeepDVR feeds one volume per step: no dropout (a single training volume, and
data-parallel runs must match single-process runs), and batch norm always uses the batch's own
statistics (the batch is that one volume; running averages would lag behind the changing weights
and make validation renders differ from training renders).
"""
from __future__ import annotations

import torch
from monai.networks.nets.vnet import DownTransition, InputTransition, OutputTransition, UpTransition
from torch import nn
from torch.nn import functional as F

ELU = ("elu", {"inplace": True})
DOWN_CONVS = (1, 2, 3, 2)  # convolutions per level, as in monai's VNet / the original VNet


def use_batch_statistics(module: nn.Module) -> nn.Module:
    """Make every batch norm layer normalise with the current batch's statistics, in training and eval."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.track_running_stats = False
            layer.running_mean = None
            layer.running_var = None
            layer.num_batches_tracked = None
    return module


def _down_convs(level: int) -> int:
    return DOWN_CONVS[level - 1] if level <= len(DOWN_CONVS) else DOWN_CONVS[-1]


class VNetEncoder(nn.Module):
    """VNet's contracting path: features at every level, ``widths[l] = base_width * 2**l`` channels, size / 2**l."""

    def __init__(self, in_channels: int = 1, base_width: int = 16, depth: int = 4):
        super().__init__()
        self.depth = depth
        self.widths = [base_width * 2**level for level in range(depth + 1)]
        self.input = InputTransition(3, in_channels, base_width, ELU)
        self.down = nn.ModuleList(
            DownTransition(3, self.widths[level - 1], _down_convs(level), ELU) for level in range(1, depth + 1)
        )
        use_batch_statistics(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C, D, H, W)`` with sides divisible by ``2**depth`` → list of ``depth + 1`` feature volumes."""
        features = [self.input(x)]
        for down in self.down:
            features.append(down(features[-1]))
        return features


class VNet3D(nn.Module):
    """VNet: ``(B, in, D, H, W)`` → ``(B, out, D, H, W)``; any size (padded to ``2**depth`` inside)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 4, base_width: int = 16, depth: int = 4):
        super().__init__()
        self.encoder = VNetEncoder(in_channels, base_width, depth)
        widths = self.encoder.widths
        up_convs = [2] * (depth - 2) + [1, 1] if depth >= 2 else [1]
        # Deepest first: (w_L -> w_L), then (w_l+1 -> w_l) down to w_1; each concatenates a skip of w_l-1.
        pairs = [(widths[depth], widths[depth])] + [(widths[l + 1], widths[l]) for l in range(depth - 1, 0, -1)]
        self.up = nn.ModuleList(
            UpTransition(3, w_in, w_out, n, ELU, dropout_prob=(None, 0.0))
            for (w_in, w_out), n in zip(pairs, up_convs)
        )
        self.output = OutputTransition(3, widths[1], out_channels, ELU)
        use_batch_statistics(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = pad_to_multiple(x, 2**self.encoder.depth)
        features = self.encoder(x)
        y = features[-1]
        for up, skip in zip(self.up, reversed(features[:-1])):
            y = up(y, skip)
        y = self.output(y)
        return y[..., : size[0], : size[1], : size[2]]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the last three sides of ``x`` up to multiples of ``multiple`` (at the high end)."""
    pads = []
    for side in reversed(x.shape[2:]):
        pads += [0, (-side) % multiple]
    return F.pad(x, pads, mode="replicate") if any(pads) else x

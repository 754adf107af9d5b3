"""Transfer-function models (paper Table 1, first row and Sec. 4.1): the scalar volume itself is the
feature, a lookup table or an MLP maps it to colour and opacity. They composite with VTK's
convention (emission "alpha", κ per ``unit_distance`` mm), so the learned TF means the same in
Slicer's volume rendering; the lookup exports to Slicer's transfer functions point for point.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..fields import ScalarField
from ..transfer_functions import LookupTF, MLPTF, PiecewiseTF, ScalarDomain
from .base import SingleFieldModel, VolumeInput


@dataclass
class LookupConfig:
    entries: int = 256  # table entries over the volume's scalar domain (paper: 256)
    initial_opacity: float = 0.01  # per unit distance: a thin fog, so every entry receives gradient
    unit_distance: float = 1.0  # mm; VTK's default scalar opacity unit distance, which Slicer keeps


@dataclass
class MLPConfig:
    hidden: int = 32
    layers: int = 2  # paper: two hidden layers
    unit_distance: float = 1.0


class ScalarTFModel(SingleFieldModel):
    """A transfer function ``self.tf`` of the scalar itself; ``config.unit_distance`` is its opacity unit."""

    emission = "alpha"

    def unit_distance(self, grid) -> float:
        return self.config.unit_distance

    def field(self, volume: VolumeInput) -> ScalarField:
        return ScalarField(volume.u, self.tf, volume.cell_bin_ranges)


class LookupModel(ScalarTFModel):
    """256-entry RGB + opacity table (~1 K parameters)."""

    def __init__(self, config: LookupConfig):
        super().__init__()
        self.config = config
        self.tf = LookupTF(config.entries, config.initial_opacity)

    def piecewise_tf(self, domain: ScalarDomain) -> PiecewiseTF:
        """The learned table as Slicer transfer-function points over ``domain`` (the training volume's)."""
        colors, opacities = (t.detach().cpu().double().numpy() for t in self.tf.table())
        return PiecewiseTF.from_table(colors, opacities, domain, self.config.unit_distance)


class MLPTFModel(ScalarTFModel):
    """An MLP of the scalar as TF (paper Sec. 4.1: similar parameter count as the lookup)."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        self.tf = MLPTF(config.hidden, config.layers)

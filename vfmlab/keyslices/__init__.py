"""Key slices: which slices of a volume a 2D foundation model should look at (prompt, label, show first).

:mod:`.scoring` scores each slice (encoder attention and feature novelty, foreground, contrast, segment
presence), :mod:`.selection` chooses important and diverse slices (or a contiguous run) and reports
their coverage, :mod:`.fusion` fuses the chosen slices' features into a volume descriptor, :mod:`.run`
ties them together and writes ``vfmlab slices``' files.
"""
from .config import KeySliceConfig, ScoreWeights

__all__ = ["KeySliceConfig", "ScoreWeights"]

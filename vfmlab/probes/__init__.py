"""Attention probes of vision foundation models on volume renderings (after DINO's attention visualisation).

``registry`` (models by name, built from :mod:`vfmlab.weights`), ``base`` (:class:`AttentionMaps`),
``vit`` (DINO, CLIP), ``sam``, ``litemedsam``, ``maps`` (pictures), ``metrics`` (AUROC per head and
segment, entropy, colour sensitivity), ``run`` (probe a capture folder), ``three_balls`` (the paper's
colour experiment). Importing the package does not import torch.
"""

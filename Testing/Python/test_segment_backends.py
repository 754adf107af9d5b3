"""Where the image encoder runs: the backend choice, the ONNX export cache (made once, checked on every
load, refused and made again when stale or corrupt), and real LiteMedSAM / HQ-LiteMedSAM giving the same
embeddings and masks in ONNX Runtime as in torch on the sample CT.

Every test writes its exports into a temporary ``VFMLAB_WEIGHTS_DIR``, never the user's cache.
"""
from __future__ import annotations

import json
import logging
import re
import sys

import numpy as np
import pytest
import torch
from torch import nn

from vfmlab.errors import InputError, WeightsError
from vfmlab.volume_io import read_labels, read_volume
from vfmlab.metrics import overlap_metrics
from vfmlab.segment import encoder_backends
from vfmlab.segment.encoder_backends import (
    BackendChoice, EncoderSpec, choose_backend, export_path, load_or_export, place_encoder, record_path,
)
from vfmlab.segment.propagate import box_of
from vfmlab.segment.registry import build_segmenter
from vfmlab.segment.segmenter import Prompt, PromptSegmenter
from vfmlab.segment.volume_segmenter import VolumeSegmenter
from vfmlab.weights import ENV_VAR, get_entry

ORGANS = {"liver": 5, "spleen": 1, "kidney_right": 2}
WEIGHTS = "ab" * 32  # a stand-in sha256 for the tiny encoder's weights


@pytest.fixture(autouse=True)
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "weights"))
    return tmp_path / "weights"


@pytest.fixture
def export_calls(monkeypatch) -> list:
    """Counts ``torch.onnx.export`` calls; each still exports for real."""
    calls, export = [], torch.onnx.export

    def spy(*args, **kwargs):
        calls.append(args[2])
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    return calls


@pytest.fixture
def two_threads():
    """ORT takes torch's thread count; 2 is what the speed claims are measured with."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def tiny_segmenter() -> tuple[PromptSegmenter, nn.Module]:
    """A LiteMedSAM-named segmenter whose encoder is one conv: exports in milliseconds."""
    torch.manual_seed(0)
    encoder = nn.Conv2d(3, 8, kernel_size=4, stride=4)
    model = nn.Module()
    model.image_encoder = encoder
    return PromptSegmenter("litemedsam", model, 32, lambda x: (encoder(x), None)), encoder


def tiny_spec() -> EncoderSpec:
    segmenter, encoder = tiny_segmenter()
    return EncoderSpec(segmenter.name, segmenter.image_size, segmenter.encode_image, encoder)


def run(session, image: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session.run(None, {"image": image.numpy()})[0])


# -- choosing a backend ----------------------------------------------------------------------------

def test_auto_uses_onnx_on_the_cpu_and_torch_without_onnxruntime(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_backend("litemedsam", "auto", "cpu").backend == "onnx"
    assert choose_backend("litemedsam", "auto").backend == "onnx"
    assert choose_backend("dino_vits16").backend == "torch", "a family without an export stays in torch"

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    choice = choose_backend("litemedsam", "auto", "cpu")
    assert choice.backend == "torch" and "onnxruntime cannot be imported" in choice.reason
    with caplog.at_level(logging.INFO, logger=encoder_backends.__name__):
        segmenter = build_segmenter("litemedsam", device="cpu")
    assert segmenter.backend == "torch" and "onnxruntime cannot be imported" in caplog.text
    with pytest.raises(WeightsError, match="backend 'onnx' cannot run here: onnxruntime cannot be imported"):
        build_segmenter("litemedsam", backend="onnx")


def test_cuda_is_chosen_only_when_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_backend("litemedsam").backend == "cuda"
    assert choose_backend("litemedsam", device="cuda:1").device == torch.device("cuda:1")
    assert choose_backend("litemedsam", device="cpu").backend == "onnx", "device='cpu' keeps it off the GPU"
    assert choose_backend("litemedsam", "cuda").backend == "cuda"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_backend("litemedsam").backend == "onnx"
    with pytest.raises(InputError, match="needs a GPU"):
        choose_backend("litemedsam", "cuda")
    with pytest.raises(InputError, match="runs on the CPU"):
        choose_backend("litemedsam", "onnx", "cuda")
    with pytest.raises(InputError, match="runs on a GPU"):
        choose_backend("litemedsam", "cuda", "cpu")
    with pytest.raises(InputError, match="unknown encoder backend 'tensorrt'"):
        choose_backend("litemedsam", "tensorrt")
    with pytest.raises(WeightsError, match="has no ONNX export"):
        choose_backend("dino_vits16", "onnx")


def test_a_failed_export_falls_back_to_torch_only_under_auto(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::foo")

    monkeypatch.setattr(torch.onnx, "export", broken)
    cpu, image = torch.device("cpu"), torch.rand(1, 3, 32, 32)
    segmenter, encoder = tiny_segmenter()
    place_encoder(segmenter, BackendChoice("onnx", cpu, "auto", explicit=False), encoder)
    assert segmenter.backend == "onnx", "nothing is exported before the first encode"
    with caplog.at_level(logging.WARNING):
        embedding, _ = segmenter.encode_image(image)
    assert torch.allclose(embedding, encoder(image)) and segmenter.backend == "torch"
    assert "aten::foo" in caplog.text and "runs in torch" in caplog.text

    segmenter, encoder = tiny_segmenter()
    place_encoder(segmenter, BackendChoice("onnx", cpu, "asked for", explicit=True), encoder)
    with pytest.raises(WeightsError, match="ONNX export of the litemedsam image encoder failed.*aten::foo"):
        segmenter.encode_image(image)


# -- the export cache (a one-conv encoder) ---------------------------------------------------------

def test_export_is_made_once_and_recorded(export_calls, weights_dir):
    spec, image = tiny_spec(), torch.rand(1, 3, 32, 32)
    load_or_export(spec, WEIGHTS)
    path = export_path("litemedsam", WEIGHTS, 32)
    assert len(export_calls) == 1 and path.parent == weights_dir / "onnx"
    record = json.loads(record_path(path).read_text())
    assert record["weights_sha256"] == WEIGHTS and record["input_size"] == 32
    assert record["opset"] == encoder_backends.OPSET and record["torch_version"] == torch.__version__
    assert record["onnx_sha256"] == encoder_backends.sha256_of(path)

    session = load_or_export(spec, WEIGHTS)
    assert len(export_calls) == 1, "the second load must reuse the export"
    assert torch.allclose(run(session, image), spec.encoder(image), atol=1e-5)
    load_or_export(spec, "cd" * 32)
    assert len(export_calls) == 2, "other weights need their own export"


@pytest.mark.parametrize("damage, reason", [
    ("weights", "exported with weights_sha256"),
    ("record", "record .* is missing"),
    ("truncated", r"record says \w+ \(changed or truncated\)"),
    ("corrupt", "ONNX Runtime cannot load it"),
])
def test_a_stale_or_corrupt_export_is_refused_and_made_again(export_calls, caplog, damage, reason):
    spec = tiny_spec()
    load_or_export(spec, WEIGHTS)
    path = export_path("litemedsam", WEIGHTS, 32)
    sidecar = record_path(path)
    record = json.loads(sidecar.read_text())
    if damage == "weights":  # as if the file had been exported from other weights
        sidecar.write_text(json.dumps({**record, "weights_sha256": "cd" * 32}))
    elif damage == "record":
        sidecar.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:  # garbage whose record matches: only ONNX Runtime can tell
        path.write_bytes(b"not an onnx model")
        sidecar.write_text(json.dumps({**record, "onnx_sha256": encoder_backends.sha256_of(path)}))
    with caplog.at_level(logging.WARNING):
        session = load_or_export(spec, WEIGHTS)
    assert len(export_calls) == 2
    assert str(path) in caplog.text and "refusing" in caplog.text
    assert any(re.search(reason, r.getMessage()) for r in caplog.records), caplog.text
    assert json.loads(sidecar.read_text())["onnx_sha256"] == encoder_backends.sha256_of(path)
    image = torch.rand(1, 3, 32, 32)
    assert torch.allclose(run(session, image), spec.encoder(image), atol=1e-5)


def test_old_exports_of_a_family_are_pruned(weights_dir):
    spec = tiny_spec()
    for index in range(encoder_backends.KEEP_PER_FAMILY + 2):
        load_or_export(spec, f"{index:02d}" * 32)
    kept = sorted(p.name for p in (weights_dir / "onnx").glob("litemedsam-*.onnx"))
    assert len(kept) == encoder_backends.KEEP_PER_FAMILY
    assert export_path("litemedsam", "04" * 32, 32).name in kept, "the newest export is kept"
    assert len(list((weights_dir / "onnx").glob("*.json"))) == len(kept)


# -- real LiteMedSAM weights on the sample CT --------------------------------------------------------

@pytest.fixture(scope="module")
def sample_slices(shared_data):
    """Three axial slices of the example CT with one organ each: ``[(image, organ mask)]``."""
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    engine = VolumeSegmenter(build_segmenter("litemedsam", device="cpu", backend="torch"), ct)
    labels_view = engine.stack("axial").view(labels)
    slices = []
    for value in ORGANS.values():
        reference = labels_view == value
        present = np.flatnonzero(reference.any(axis=(1, 2)))
        index = int(present[len(present) // 2])
        slices.append((engine.slice_image("axial", index), reference[index]))
    return slices


@pytest.mark.parametrize("name, slices", [("litemedsam", 3), ("hq_litemedsam", 1)])
def test_onnx_and_torch_agree_on_real_weights(name, slices, sample_slices, export_calls, monkeypatch, two_threads):
    """Same embeddings (and HQ early features) within 1e-4, same box-prompt masks (Dice >= 0.99)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    onnx = build_segmenter(name)
    reference = build_segmenter(name, device="cpu", backend="torch")
    assert (onnx.backend, reference.backend) == ("onnx", "torch") and not export_calls

    for image, organ in sample_slices[:slices]:
        fast, slow = onnx.encode(image), reference.encode(image)
        assert torch.allclose(fast.features, slow.features, atol=1e-4)
        for a, b in zip(fast.early_features or [], slow.early_features or [], strict=True):
            assert torch.allclose(a, b, atol=1e-4)
        prompt = Prompt(box=box_of(organ))
        dice = overlap_metrics(onnx.predict(fast, prompt).mask, reference.predict(slow, prompt).mask)["dice"]
        assert dice >= 0.99
    record = json.loads(record_path(onnx.encode_image.path).read_text())
    assert record["weights_sha256"] == get_entry(name).sha256
    assert record["outputs"] == (["embedding", "early_0"] if name == "hq_litemedsam" else ["embedding"])

    again = build_segmenter(name, device="cpu")
    again.encode(sample_slices[0][0])
    assert again.backend == "onnx" and len(export_calls) == 1, "exported once, then reused"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sam_vit_b", "hq_sam_vit_b", "hq_sam_vit_tiny"])
def test_sam_encoders_export_with_their_early_features(tmp_path, name, export_calls, monkeypatch):
    """Random weights in the official layouts (no real SAM weights offline); ViT-B exports take ~30 s."""
    from test_segment import _official_layout_checkpoint

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    checkpoint = _official_layout_checkpoint(tmp_path, name)
    onnx = build_segmenter(name, local_file=checkpoint, backend="onnx")
    reference = build_segmenter(name, local_file=checkpoint, backend="torch")
    image = np.random.default_rng(0).random((64, 80)).astype(np.float32)
    fast, slow = onnx.encode(image), reference.encode(image)
    assert len(export_calls) == 1 and torch.allclose(fast.features, slow.features, atol=1e-4)
    for a, b in zip(fast.early_features or [], slow.early_features or [], strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    assert onnx.predict(fast, Prompt(box=(5, 5, 40, 30))).mask.shape == (64, 80)

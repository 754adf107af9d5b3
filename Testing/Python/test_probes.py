"""Attention probes: official checkpoint layouts load through the real builders; the read-outs are the models' own.

DINO, CLIP and SAM weights cannot be downloaded here, so their tests build small random state dicts
in each official key layout (DINO's backbone, OpenAI's CLIP archive, Meta's SAM checkpoint) and load
them through the same code as real files. LiteMedSAM runs with its real packaged weights.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vfmlab.errors import InputError, WeightsError
from vfmlab.probes import maps as pictures
from vfmlab.probes import metrics
from vfmlab.probes.registry import build_from_state_dict, build_probe, parse_models, weights_status

torch.set_num_threads(2)


def _rand(*shape, scale=0.02, generator=None):
    return torch.randn(*shape, generator=generator) * scale


def _norm(prefix: str, dim: int) -> dict:
    return {prefix + "weight": torch.ones(dim), prefix + "bias": torch.zeros(dim)}


def _linear(prefix: str, out: int, into: int, g, scale=0.02) -> dict:
    return {prefix + "weight": _rand(out, into, scale=scale, generator=g), prefix + "bias": torch.zeros(out)}


def dino_state_dict(dim=128, depth=2, patch=16, grid=4, seed=0) -> dict:
    """facebookresearch/dino VisionTransformer backbone keys (the *_pretrain.pth files)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"cls_token": _rand(1, 1, dim, generator=g), "pos_embed": _rand(1, grid * grid + 1, dim, generator=g),
          "patch_embed.proj.weight": _rand(dim, 3, patch, patch, generator=g),
          "patch_embed.proj.bias": torch.zeros(dim), **_norm("norm.", dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({**_norm(p + "norm1.", dim), **_linear(p + "attn.qkv.", 3 * dim, dim, g, scale=0.2),
                   **_linear(p + "attn.proj.", dim, dim, g), **_norm(p + "norm2.", dim),
                   **_linear(p + "mlp.fc1.", 4 * dim, dim, g), **_linear(p + "mlp.fc2.", dim, 4 * dim, g)})
    return sd


def openai_clip_state_dict(width=128, layers=2, patch=16, grid=4, embed=32, seed=1) -> dict:
    """openai/CLIP model.state_dict() keys: the visual tower plus (ignored) text-tower keys."""
    g = torch.Generator().manual_seed(seed)
    v = "visual."
    sd = {v + "class_embedding": _rand(width, generator=g),
          v + "positional_embedding": _rand(grid * grid + 1, width, generator=g),
          v + "conv1.weight": _rand(width, 3, patch, patch, generator=g), v + "proj": _rand(width, embed, generator=g),
          **_norm(v + "ln_pre.", width), **_norm(v + "ln_post.", width),
          "token_embedding.weight": _rand(100, embed, generator=g), "positional_embedding": _rand(77, embed, generator=g),
          "text_projection": _rand(embed, embed, generator=g), "logit_scale": torch.tensor(4.6),
          **_norm("ln_final.", embed)}
    for i in range(layers):
        p = f"{v}transformer.resblocks.{i}."
        sd.update({**_linear(p + "attn.in_proj_", 3 * width, width, g, scale=0.2),  # in_proj_weight, in_proj_bias
                   **_linear(p + "attn.out_proj.", width, width, g), **_norm(p + "ln_1.", width),
                   **_norm(p + "ln_2.", width), **_linear(p + "mlp.c_fc.", 4 * width, width, g),
                   **_linear(p + "mlp.c_proj.", width, 4 * width, g)})
    return sd


def sam_state_dict(dim=64, head_dim=32, depth=3, patch=16, grid=4, window=2, global_blocks=(1, 2), seed=2):
    """segment_anything sam_vit_*.pth keys: the image encoder plus (ignored) prompt encoder and mask decoder."""
    g = torch.Generator().manual_seed(seed)
    e = "image_encoder."
    sd = {e + "pos_embed": _rand(1, grid, grid, dim, generator=g),
          e + "patch_embed.proj.weight": _rand(dim, 3, patch, patch, generator=g),
          e + "patch_embed.proj.bias": torch.zeros(dim), e + "neck.0.weight": _rand(32, dim, 1, 1, generator=g),
          **_norm(e + "neck.1.", 32), e + "neck.2.weight": _rand(32, 32, 3, 3, generator=g), **_norm(e + "neck.3.", 32),
          "prompt_encoder.point_embeddings.0.weight": _rand(1, 32, generator=g),
          "mask_decoder.iou_token.weight": _rand(1, 32, generator=g)}
    for i in range(depth):
        p = f"{e}blocks.{i}."
        span = 2 * (grid if i in global_blocks else window) - 1
        sd.update({**_norm(p + "norm1.", dim), **_linear(p + "attn.qkv.", 3 * dim, dim, g, scale=0.3),
                   **_linear(p + "attn.proj.", dim, dim, g), **_norm(p + "norm2.", dim),
                   p + "attn.rel_pos_h": _rand(span, head_dim, scale=0.5, generator=g),
                   p + "attn.rel_pos_w": _rand(span, head_dim, scale=0.5, generator=g),
                   **_linear(p + "mlp.lin1.", 4 * dim, dim, g), **_linear(p + "mlp.lin2.", dim, 4 * dim, g)})
    return sd


def random_capture(height=72, width=96, seed=3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("name, state_dict, heads, grid", [
    ("dino_vits16", dino_state_dict(dim=128), 2, (4, 6)),
    ("dino_vitb16", dino_state_dict(dim=192, depth=3), 3, (4, 6)),
    ("clip_vitb16", openai_clip_state_dict(width=128), 2, (4, 6)),
    ("sam_vit_b", sam_state_dict(), 2, (3, 4)),  # 72 x 96 resized to 48 x 64 in a 64 x 64 input: 3 x 4 patches
])
def test_every_probe_loads_its_official_layout(name, state_dict, heads, grid):
    probe = build_from_state_dict(name, state_dict)
    maps = probe.attention(random_capture())
    assert maps.heads.shape == (heads, *grid)
    assert maps.image_size == (72, 96) and np.isfinite(maps.heads).all() and (maps.heads >= 0).all()
    if maps.mode == "cls":  # the CLS row is a distribution over the CLS token and the patches
        assert (maps.heads.reshape(heads, -1).sum(axis=1) <= 1.0 + 1e-5).all()
    assert maps.at_image_resolution().shape == (heads, 72, 96)
    probe.plain_forward(random_capture())  # the benchmark's reference path runs too


def test_a_checkpoint_of_another_model_is_refused():
    with pytest.raises(WeightsError, match="lacks"):
        build_from_state_dict("dino_vits16", sam_state_dict())
    broken = dino_state_dict()
    del broken["blocks.1.mlp.fc2.weight"]
    with pytest.raises(WeightsError, match="does not fit"):
        build_from_state_dict("dino_vits16", broken)
    with pytest.raises(InputError, match="unknown probe model"):
        parse_models("litemedsam,dino_vits8")


def test_cls_map_puts_each_patch_where_it_is_in_the_image():
    """One head whose CLS query matches only patch (row 1, column 2): the map must peak exactly there."""
    dim, grid = 64, 4
    sd = dino_state_dict(dim=dim, depth=1, grid=grid)
    for key in ("patch_embed.proj.weight", "blocks.0.attn.proj.weight", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"):
        sd[key] = torch.zeros_like(sd[key])  # patch tokens are their position embeddings only
    u = torch.sign(torch.randn(dim, generator=torch.Generator().manual_seed(5)))
    u -= u.mean()
    sd["cls_token"] = u.view(1, 1, dim)
    sd["pos_embed"][0, 0] = 0
    sd["pos_embed"][0, 1 + 1 * grid + 2] = u  # patch (row 1, col 2) looks like the CLS token
    sd["blocks.0.attn.qkv.weight"] = torch.eye(dim).repeat(3, 1)  # q = k = v = the normalised token
    probe = build_from_state_dict("dino_vits16", sd)
    heads = probe.attention(random_capture(64, 64)).heads
    assert heads.shape == (1, grid, grid)
    assert np.unravel_index(heads[0].argmax(), heads[0].shape) == (1, 2)
    assert heads[0, 1, 2] > 10 * np.delete(heads[0].ravel(), 1 * grid + 2).max()


def test_sam_recomputed_attention_is_the_blocks_own():
    from vfmlab.probes.sam import build_sam_encoder, head_probabilities

    encoder = build_sam_encoder(sam_state_dict())
    attention = encoder.blocks[2].attn  # a global block, with relative positions
    x = torch.randn(1, 4, 4, 64)
    with torch.no_grad():
        qkv = attention.qkv(x).reshape(1, 16, 3, attention.num_heads, -1)
        outputs = [head_probabilities(attention, x, h)[0] @ qkv[0, :, 2, h] for h in range(attention.num_heads)]
        rebuilt = attention.proj(torch.cat(outputs, dim=-1)).reshape(1, 4, 4, 64)
        np.testing.assert_allclose(rebuilt.numpy(), attention(x).numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def litemedsam():
    return build_probe("litemedsam")  # the real packaged weights, through vfmlab.weights


def test_litemedsam_recomputed_window_attention_is_the_blocks_own(litemedsam):
    from vfmlab.probes.litemedsam import window_probabilities

    attention = litemedsam.block.attn
    x = torch.randn(6, 49, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        probabilities = window_probabilities(attention, x)
        qkv = attention.qkv(attention.norm(x)).view(6, 49, attention.num_heads, -1)
        v = qkv[..., 2 * attention.key_dim:].permute(0, 2, 1, 3)
        rebuilt = attention.proj((probabilities @ v).transpose(1, 2).reshape(6, 49, -1))
        np.testing.assert_allclose(rebuilt.numpy(), attention(x).numpy(), atol=1e-4)


def test_windowed_maps_land_where_their_tokens_are():
    from vfmlab.probes.litemedsam import windowed_mean_received

    grid, window = (9, 9), 7  # padded to 14 x 14: 2 x 2 windows
    probabilities = torch.full((4, 2, 49, 49), 1.0 / 49)
    probabilities[3, 1] = 0.0
    probabilities[3, 1, :, 1 * 7 + 0] = 1.0  # window (1, 1), head 1: everyone attends to its token (1, 0)
    maps = windowed_mean_received(probabilities, grid, window).numpy()
    assert maps.shape == (2, 9, 9)
    np.testing.assert_allclose(maps[0, :7, :7], 1.0, atol=1e-6)  # even attention in a full window reads 1
    assert np.unravel_index(maps[1, 7:, 7:].argmax(), (2, 2)) == (1, 0)
    assert maps[1, 8, 7] == pytest.approx(4.0)  # all of it, over the window's 4 image tokens


def test_litemedsam_real_weights_on_a_capture(litemedsam):
    ok, where = weights_status("litemedsam")
    assert ok and where.endswith("lite_medsam.pth")
    rgb = np.zeros((96, 96, 3), np.uint8)
    rgb[20:60, 30:80] = (230, 200, 150)  # a bright box on black, like a rendered object
    maps = litemedsam.attention(rgb)
    assert maps.heads.shape == (10, 64, 64) and maps.mode == "mean_received"
    assert np.isfinite(maps.heads).all()
    # relative to an even spread: each full 7 x 7 window averages to 1
    np.testing.assert_allclose(maps.heads[:, :63, :63].reshape(10, 9, 7, 9, 7).mean(axis=(2, 4)), 1.0, atol=1e-4)


def test_registry_loads_a_full_size_official_dino_file(tmp_path, monkeypatch):
    """A file with DINO ViT-S/16's real shapes passes the registry's architecture check and builds."""
    monkeypatch.setenv("VFMLAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(dino_state_dict(dim=384, depth=12, grid=14), path)
    assert weights_status("dino_vits16", path)[0]
    assert not weights_status("dino_vits16")[0]  # nothing in the (empty) weights folder
    probe = build_probe("dino_vits16", local_file=path, input_size=64)
    assert probe.attention(random_capture()).heads.shape == (6, 4, 4)
    torch.save(sam_state_dict(), tmp_path / "not_dino.pth")
    with pytest.raises(WeightsError, match="not a vit_small_patch16_224.dino checkpoint"):
        build_probe("dino_vits16", local_file=tmp_path / "not_dino.pth")


def test_auroc_matches_monai_with_ties():
    from monai.metrics import compute_roc_auc

    rng = np.random.default_rng(0)
    maps = rng.integers(0, 12, (3, 10, 12)).astype(float)  # coarse values: many ties
    cells = rng.integers(0, 4, (10, 12))
    cells[0, 0] = 9  # a one-cell segment is left out
    aurocs = metrics.segment_aurocs(maps, cells)
    assert sorted(aurocs) == [1, 2, 3]
    for label, values in aurocs.items():
        target = torch.tensor((cells.ravel() == label).astype(float))
        reference = [float(compute_roc_auc(torch.tensor(m.ravel()), target)) for m in maps]
        np.testing.assert_allclose(values, reference, atol=1e-12)


def test_metrics_on_known_maps():
    labels = np.zeros((8, 8), int)
    labels[:4, :4] = 5  # top-left quadrant is segment 5
    labels[0, 3] = 7  # a stray pixel does not win its cell
    cells = metrics.cell_labels(labels, (2, 2))
    np.testing.assert_array_equal(cells, [[5, 0], [0, 0]])
    perfect = np.array([[[1.0, 0.1], [0.1, 0.1]]])
    assert metrics.segment_aurocs(perfect, cells, min_cells=1)[5][0] == pytest.approx(1.0)
    uniform, peaked = np.ones((1, 4, 4)), np.zeros((1, 4, 4))
    peaked[0, 1, 1] = 1
    np.testing.assert_allclose(metrics.attention_entropy(np.concatenate([uniform, peaked])), [1.0, 0.0])
    np.testing.assert_allclose(metrics.colour_sensitivity(peaked, peaked), [0.0])
    np.testing.assert_allclose(metrics.colour_sensitivity(peaked, np.roll(peaked, 1, axis=2)), [1.0])
    rows = [{"head": h, "label": lab, "auroc": a} for h, lab, a in [(0, 5, 0.9), (0, 6, 0.6), (1, 6, 0.85), (2, 5, 0.5)]]
    table = metrics.head_table(rows, {0: [0.5], 1: [0.7], 2: [0.9]}, {5: "liver", 6: "spleen"})
    assert [r["best_segment"] for r in table] == ["liver", "spleen", "liver"]
    summary = metrics.model_summary(table)
    assert summary["specialised_heads"] == 2 and summary["segments"] == ["liver", "spleen"]


def test_threshold_mode_keeps_the_top_attention_mass():
    maps = np.array([[[0.5, 0.1], [0.3, 0.1]]])
    np.testing.assert_array_equal(pictures.threshold_mass(maps, 0.6)[0], [[True, False], [True, False]])
    np.testing.assert_array_equal(pictures.threshold_mass(maps, 0.4)[0], [[True, False], [False, False]])
    assert pictures.upsample(maps, (4, 6)).shape == (1, 4, 6)
    assert pictures.upsample(maps, (4, 6))[0, 3, 0] == pytest.approx(0.3)

"""Attention maps as pictures: image-resolution maps, DINO's threshold mode, heatmaps, overlays and grids."""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(n, h, w)`` → ``(n, H, W)``: every pixel takes the value of the cell its centre falls in (nearest).

    As DINO's visualisation does, cells are not smoothed: a map shows what the model actually resolved.
    """
    maps = np.asarray(maps)
    height, width = size
    rows = np.minimum((np.arange(height) + 0.5) * maps.shape[-2] / height, maps.shape[-2] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * maps.shape[-1] / width, maps.shape[-1] - 1).astype(int)
    return maps[..., rows[:, None], cols[None, :]]


def threshold_mass(maps: np.ndarray, keep: float = 0.6) -> np.ndarray:
    """DINO's threshold mode: per map, the cells holding the top ``keep`` fraction of its attention mass.

    ``(n, h, w)`` → boolean ``(n, h, w)``. As in DINO's ``visualize_attention.py``: sort ascending,
    normalise, and keep the cells whose cumulative mass lies above ``1 - keep``.
    """
    if not 0.0 < keep <= 1.0:
        raise InputError(f"the kept attention mass must be in (0, 1], got {keep}")
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1)
    order = np.argsort(flat, axis=1, kind="stable")
    ranked = np.take_along_axis(flat, order, axis=1)
    cumulative = np.cumsum(ranked, axis=1) / np.maximum(ranked.sum(axis=1, keepdims=True), 1e-12)
    kept = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(kept, order, cumulative > 1.0 - keep, axis=1)
    return kept.reshape(maps.shape)


def normalise(map_: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Scale a map to [0, 1] from its minimum to its ``percentile`` (each head is shown on its own scale).

    Clipping the top cells keeps a few outliers (e.g. the high-norm "register" patches ViTs are known for)
    from turning the rest of the map black.
    """
    low, high = float(np.min(map_)), float(np.percentile(map_, percentile))
    if high <= low:
        high = float(np.max(map_))
    return np.clip((map_ - low) / (high - low), 0, 1) if high > low else np.zeros_like(map_, dtype=float)


def heatmap(map_: np.ndarray, size: tuple[int, int], colormap: str = "inferno") -> np.ndarray:
    """``(H, W, 3)`` uint8 heatmap of one ``(h, w)`` map at image size."""
    import matplotlib

    colors = matplotlib.colormaps[colormap](normalise(upsample(map_[None], size)[0]))[..., :3]
    return (colors * 255).round().astype(np.uint8)


def overlay(rgb: np.ndarray, map_: np.ndarray, alpha: float = 0.6, colormap: str = "inferno") -> np.ndarray:
    """The capture with a heatmap blended over it (more heatmap where attention is high)."""
    heat = heatmap(map_, rgb.shape[:2], colormap).astype(float)
    weight = alpha * normalise(upsample(map_[None], rgb.shape[:2])[0])[..., None]
    return (rgb * (1 - weight) + heat * weight).round().astype(np.uint8)


def threshold_overlay(rgb: np.ndarray, masks: np.ndarray, colormap: str = "tab10") -> np.ndarray:
    """The capture with each head's kept region (:func:`threshold_mass`) tinted in its own colour."""
    import matplotlib

    palette = matplotlib.colormaps[colormap]
    out = rgb.astype(float)
    for head, mask in enumerate(upsample(masks, rgb.shape[:2]).astype(bool)):
        color = np.asarray(palette(head % palette.N)[:3]) * 255
        out[mask] = 0.6 * out[mask] + 0.4 * color
    return out.round().astype(np.uint8)


def grid_image(rows: list[tuple[np.ndarray, np.ndarray]], tile: int = 128, columns_title: list[str] | None = None,
               row_titles: list[str] | None = None) -> np.ndarray:
    """One picture per model: a row per capture: the capture, each head's overlay, the head average.

    ``rows`` holds ``(rgb, heads (n, h, w))`` pairs; every tile is ``tile`` pixels high.
    """
    from PIL import Image, ImageDraw

    if not rows:
        raise InputError("nothing to draw: no captures")
    label_h = 14
    images = []
    for rgb, heads in rows:
        tiles = [rgb] + [overlay(rgb, head) for head in heads] + [overlay(rgb, heads.mean(axis=0))]
        width = max(1, round(tile * rgb.shape[1] / rgb.shape[0]))
        images.append([np.asarray(Image.fromarray(t).resize((width, tile), Image.BILINEAR)) for t in tiles])
    n_cols = max(len(r) for r in images)
    tile_w = images[0][0].shape[1]
    left = 70 if row_titles else 0
    canvas = Image.new("RGB", (left + n_cols * tile_w, label_h + len(images) * tile), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    titles = columns_title or ["capture"] + [f"head {h}" for h in range(n_cols - 2)] + ["mean"]
    for col, title in enumerate(titles[:n_cols]):
        draw.text((left + col * tile_w + 3, 1), title, fill=(0, 0, 0))
    for row, tiles in enumerate(images):
        if row_titles:
            draw.text((3, label_h + row * tile + tile // 2 - 6), row_titles[row][:11], fill=(0, 0, 0))
        for col, picture in enumerate(tiles):
            canvas.paste(Image.fromarray(picture), (left + col * tile_w, label_h + row * tile))
    return np.asarray(canvas)


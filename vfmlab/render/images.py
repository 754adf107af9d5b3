"""PNG files of captures: RGB views and 16-bit segment-ID images (``labels_NNN.png``)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError

LABELS_ENCODING = (
    "16-bit greyscale PNG, same size and pixel grid as the view; pixel value = label value of the first "
    "segment the pixel's ray enters (0 = none); label value -> segment in 'segments'"
)


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    path = Path(path)
    Image.fromarray(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8), "RGB").save(path)
    return path


@contextmanager
def _opened_image(path: Path):
    """The PIL image at ``path``; a missing or unreadable file raises :class:`InputError` naming it."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError("does not exist", path)
    try:
        with Image.open(path) as image:
            yield image
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"is not a readable image ({error})", path) from None


def read_rgb(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 of an image file (greyscale and RGBA converted)."""
    with _opened_image(Path(path)) as image:
        return np.array(image.convert("RGB"))


def write_label_png(path: str | Path, labels: np.ndarray) -> Path:
    """Write ``(H, W)`` label values (0..65535) as a 16-bit greyscale PNG."""
    from PIL import Image

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) > 65535:
        raise InputError(f"a segment-ID image needs (H, W) values in 0..65535, got shape {labels.shape}")
    path = Path(path)
    Image.fromarray(labels.astype(np.uint16)).save(path)
    return path


def read_label_png(path: str | Path) -> np.ndarray:
    """``(H, W)`` int32 label values of a segment-ID PNG written by :func:`write_label_png`."""
    path = Path(path)
    with _opened_image(path) as image:
        if image.mode not in ("I;16", "I", "L"):
            raise InputError(f"is a {image.mode} image, not a greyscale segment-ID image", path)
        return np.asarray(image).astype(np.int32)

"""The "Volume geometry" panel: :meth:`vfmlab.volume.Volume.info` of a volume node as plain text."""
from __future__ import annotations

from typing import Any, Sequence

NO_VOLUME_TEXT = "Select a volume to see its geometry."


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _vector(values: Sequence[float], unit: str = "") -> str:
    text = "(" + ", ".join(f"{float(v):.3f}" for v in values) + ")"
    return f"{text} {unit}".rstrip()


def _matrix(rows: Sequence[Sequence[float]]) -> list[str]:
    return ["  [" + "  ".join(f"{float(v):9.4f}" for v in row) + " ]" for row in rows]


def format_volume_info(info: dict) -> str:
    """Multi-line text of a ``Volume.info()`` dictionary (fixed-width numbers, for a monospace box)."""
    i, j, k = info["shape_ijk"]
    low, high = info["value_range"]
    lines = [
        f"Name:        {info['name']}",
        f"Size (IJK):  {i} x {j} x {k} voxels",
        f"Spacing:     {' x '.join(f'{float(s):.4g}' for s in info['spacing'])} mm",
        f"Origin:      {_vector(info['origin_ras'], 'mm (RAS)')}",
        f"Scalar type: {info['dtype']}",
        f"Value range: [{_number(low)}, {_number(high)}]",
        "Direction (RAS; columns are the I, J, K axes):",
        *_matrix(info["direction_ras"]),
        "IJK to RAS:",
        *_matrix(info["ijk_to_ras"]),
    ]
    return "\n".join(lines)


def volume_geometry_text(volume_node) -> str:
    """Geometry text of a volume node (world geometry: linear parent transforms applied).

    A node without voxels or under a non-linear transform gives a one-line explanation instead
    of raising, so the panel always shows something useful.
    """
    if volume_node is None:
        return NO_VOLUME_TEXT
    from vfmlab.errors import VfmlabError
    from vfmlab.mrml import volume_from_node

    try:
        volume = volume_from_node(volume_node)
    except VfmlabError as error:
        return str(error)
    return format_volume_info(volume.info())

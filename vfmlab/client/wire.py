"""How volumes and masks travel between the panels (or the CLI) and the model server.

Standard library and numpy only (both ship with 3D Slicer's Python), so the client needs nothing
installed in Slicer. A volume is sent once, as one JSON header line (shape, dtype, IJK->RAS) followed
by its voxels in C order, little-endian; it is named by the sha256 of exactly those bytes, so a
server that already holds it is not sent it again. Masks come back as JSON: shape plus the
zlib-compressed bit-packed voxels in base64 (a 512 x 512 slice is a few hundred bytes).
"""
from __future__ import annotations

import base64
import hashlib
import json
import zlib

import numpy as np

VOLUME_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
MAX_HEADER_BYTES = 4096


class WireError(ValueError):
    """A payload that is not what it claims to be; the message names the problem."""


def _header(array: np.ndarray, ijk_to_ras: np.ndarray) -> bytes:
    matrix = np.asarray(ijk_to_ras, dtype=float)
    if matrix.shape != (4, 4):
        raise WireError(f"IJK->RAS must be a 4x4 matrix, got shape {matrix.shape}")
    header = {"shape": list(array.shape), "dtype": array.dtype.name, "ijk_to_ras": matrix.tolist()}
    return json.dumps(header, sort_keys=True).encode("ascii") + b"\n"


def encode_volume(array: np.ndarray, ijk_to_ras: np.ndarray) -> tuple[bytes, str]:
    """``(K, J, I)`` voxels and their 4x4 IJK->RAS matrix -> (payload, its sha256 hex digest)."""
    array = np.asarray(array)
    if array.dtype.name not in VOLUME_DTYPES:
        raise WireError(f"voxels of type {array.dtype.name} cannot be sent; use one of {', '.join(VOLUME_DTYPES)}")
    voxels = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    payload = _header(array, ijk_to_ras) + voxels.tobytes()
    return payload, hashlib.sha256(payload).hexdigest()


def decode_volume(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A payload of :func:`encode_volume` -> ``(array (K, J, I), ijk_to_ras (4, 4))``; :class:`WireError`
    names what is wrong with a malformed one."""
    end = payload.find(b"\n", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise WireError("the volume has no header line (JSON with shape, dtype, ijk_to_ras)")
    try:
        header = json.loads(payload[:end])
        shape, dtype, matrix = tuple(int(n) for n in header["shape"]), header["dtype"], header["ijk_to_ras"]
    except (ValueError, KeyError, TypeError) as error:
        raise WireError(f"the volume header is not valid: {error}") from None
    if dtype not in VOLUME_DTYPES:
        raise WireError(f"voxel type {dtype!r} is not one of {', '.join(VOLUME_DTYPES)}")
    if any(n < 0 for n in shape):
        raise WireError(f"the volume shape {list(shape)} has a negative size")
    voxels = memoryview(payload)[end + 1:]
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(voxels) != expected:
        raise WireError(f"the header announces {expected} bytes of voxels ({list(shape)} {dtype}), "
                        f"the body holds {len(voxels)}")
    array = np.frombuffer(voxels, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    ijk_to_ras = np.asarray(matrix, dtype=float)
    if ijk_to_ras.shape != (4, 4) or not np.all(np.isfinite(ijk_to_ras)):
        raise WireError("ijk_to_ras must be a 4x4 matrix of finite numbers")
    return array.astype(array.dtype.newbyteorder("="), copy=False), ijk_to_ras


def encode_mask(mask: np.ndarray) -> dict:
    """A boolean mask of any shape -> ``{"shape": [...], "bits": base64}``."""
    mask = np.asarray(mask, dtype=bool)
    bits = zlib.compress(np.packbits(mask, axis=None).tobytes(), 1)
    return {"shape": list(mask.shape), "bits": base64.b64encode(bits).decode("ascii")}


def decode_mask(encoded: dict) -> np.ndarray:
    """The inverse of :func:`encode_mask`."""
    try:
        shape = tuple(int(n) for n in encoded["shape"])
        packed = np.frombuffer(zlib.decompress(base64.b64decode(encoded["bits"])), np.uint8)
    except (KeyError, TypeError, ValueError, zlib.error) as error:
        raise WireError(f"the mask is not valid: {error}") from None
    count = int(np.prod(shape, dtype=np.int64))
    if packed.size != (count + 7) // 8:
        raise WireError(f"the mask holds {packed.size * 8} bits, its shape {list(shape)} needs {count}")
    return np.unpackbits(packed, count=count).astype(bool).reshape(shape)

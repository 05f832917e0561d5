"""Reader of IDX files, the format of the MNIST and Fashion-MNIST distributions.

LeCun, Cortes & Burges, "The MNIST database of handwritten digits" (file format section);
Xiao, Rasul & Vollgraf, "Fashion-MNIST", 2017, arXiv:1708.07747, ship the same format.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the data in row-major order, big-endian. The reader checks every
part: the two zero bytes, a known type code, the number of dimensions (and the expected one
when given), and that the data has exactly ``prod(dims)`` elements, so a truncated or padded
file is an :class:`IdxError`, never a silently partial array. ``.gz`` files (recognised by
their magic bytes, not their name) are decompressed in memory; a truncated gzip stream is an
:class:`IdxError` as well.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from attnkit.data.errors import DataError
from attnkit.data.paths import display_path

__all__ = ["IdxError", "IDX_TYPES", "read_idx", "parse_idx", "encode_idx"]

#: IDX type code -> numpy dtype (big-endian where it matters)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(DataError, ValueError):
    """An IDX file that is not what it claims (bad magic, dimensions or length)."""


def parse_idx(payload: bytes, *, name: str = "<bytes>", ndim: int | None = None,
              dtype: np.dtype | type | None = None) -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file.

    Args:
        payload: the whole file.
        name: how errors name the source.
        ndim: the number of dimensions expected (None: any).
        dtype: the element type expected (None: any IDX type).

    Returns:
        an array of shape ``dims`` in native byte order.

    Raises:
        IdxError: naming ``name`` and what is wrong.
    """
    if len(payload) < 4:
        raise IdxError(f"{name}: not an IDX file ({len(payload)} bytes, shorter than the "
                       f"4-byte magic number)")
    zero0, zero1, code, dims = payload[0], payload[1], payload[2], payload[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_TYPES:
        raise IdxError(f"{name}: bad IDX magic number 0x{payload[:4].hex()} (expected "
                       f"0x0000 then a type code in "
                       f"{', '.join(f'0x{c:02x}' for c in IDX_TYPES)} then the dimension count)")
    if dims == 0:
        raise IdxError(f"{name}: IDX magic number 0x{payload[:4].hex()} declares 0 dimensions")
    if ndim is not None and dims != ndim:
        raise IdxError(f"{name}: expected {ndim} dimensions, the header declares {dims}")
    kind = IDX_TYPES[code]
    if dtype is not None and kind.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise IdxError(f"{name}: expected elements of type {np.dtype(dtype)}, the header "
                       f"declares {kind} (code 0x{code:02x})")
    header = 4 + 4 * dims
    if len(payload) < header:
        raise IdxError(f"{name}: truncated header ({len(payload)} bytes, {header} needed for "
                       f"{dims} dimensions)")
    shape = tuple(int(v) for v in np.frombuffer(payload, dtype=">u4", count=dims, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * kind.itemsize
    actual = len(payload) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise IdxError(f"{name}: {what}: dimensions {shape} need {expected} data bytes, the "
                       f"file holds {actual}")
    data = np.frombuffer(payload, dtype=kind, offset=header).reshape(shape)
    return data.astype(kind.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, *, ndim: int | None = None,
             dtype: np.dtype | type | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) with the checks of :func:`parse_idx`.

    Raises:
        IdxError: a file that is missing, unreadable, not gzip-decodable or not valid IDX.
    """
    path = Path(path)
    name = display_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IdxError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxError(f"{name}: corrupt or truncated gzip stream: {exc}") from None
    return parse_idx(raw, name=name, ndim=ndim, dtype=dtype)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of ``array`` (any shape, a dtype of :data:`IDX_TYPES`): the inverse of
    :func:`parse_idx`, used by tests and to write small fixtures."""
    array = np.asarray(array)
    codes = [c for c, k in IDX_TYPES.items()
             if k.newbyteorder("=") == array.dtype.newbyteorder("=")]
    if not codes:
        raise TypeError(f"array: dtype {array.dtype} has no IDX type code")
    code, kind = codes[0], IDX_TYPES[codes[0]]
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"array: IDX needs 1 to 255 dimensions, got {array.ndim}")
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return head + np.ascontiguousarray(array, dtype=kind).tobytes()

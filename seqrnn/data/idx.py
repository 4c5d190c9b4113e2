"""The IDX file format of MNIST: read (raw or gzipped), check, write.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian uint32
sizes, then the values in C order. MNIST uses dtype ``0x08`` (uint8): images ``[N, 28, 28]``,
labels ``[N]``.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

from seqrnn.errors import DataError

# IDX type code -> numpy dtype (multi-byte types are big-endian in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """Return the uncompressed content of ``path``, gunzipping when the file is gzipped.

    Gzip is recognised by its magic bytes, not the file name, so a mis-named file still reads.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({err})") from err


def md5_hex(content: bytes) -> str:
    """MD5 of ``content`` as 32 hex digits (MNIST's published checksums are of the raw IDX)."""
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


def parse_idx(content: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode the uncompressed bytes of an IDX file into an array of its shape and dtype.

    Raises :class:`DataError` naming ``name`` for a bad magic number, a short header, or a body
    whose length differs from what the header promises (a truncated or padded file).
    """
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] not in IDX_DTYPES:
        raise DataError(
            f"{name} is not an IDX file (bad magic number {content[:4].hex() or 'none'})"
        )
    dtype, ndim = IDX_DTYPES[content[2]], content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(
            f"{name} is truncated: its header needs {header} bytes, it has {len(content)}"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(content) - header
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise DataError(
            f"{name} is {state}: header shape {list(shape)} needs {expected} bytes of data, "
            f"the file has {actual}"
        )
    array = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``); return the path."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("=").str: code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise DataError(
            f"cannot write dtype {array.dtype} as IDX; use one of uint8, int8, "
            "int16, int32, float32, float64"
        )
    big_endian = array.astype(IDX_DTYPES[code], copy=False)
    content = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(big_endian).tobytes()
    )
    path = Path(path)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path

"""The IDX reader and writer against bytes built by hand."""

import gzip
import struct

import numpy as np
import pytest

from seqrnn.data.idx import md5_hex, parse_idx, read_bytes, write_idx
from seqrnn.errors import DataError


def idx_bytes(code: int, shape: tuple[int, ...], body: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + body


def test_parses_a_hand_built_uint8_file():
    content = idx_bytes(0x08, (2, 3, 4), bytes(range(24)))
    array = parse_idx(content)
    assert array.shape == (2, 3, 4) and array.dtype == np.uint8
    assert array[1, 2, 3] == 23 and array[0, 1, 0] == 4  # C order


def test_parses_big_endian_int32():
    content = idx_bytes(0x0C, (3,), struct.pack(">3i", 1, -2, 70000))
    assert parse_idx(content).tolist() == [1, -2, 70000]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_then_read_round_trips(tmp_path, dtype, suffix):
    array = (np.arange(60).reshape(3, 4, 5) - 7).astype(dtype)
    path = write_idx(tmp_path / f"a{suffix}", array)
    back = parse_idx(read_bytes(path))
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    content = idx_bytes(0x08, (4,), b"\x01\x02\x03\x04")
    (tmp_path / "plain-name").write_bytes(gzip.compress(content))
    assert read_bytes(tmp_path / "plain-name") == content


def test_truncated_body_is_named():
    content = idx_bytes(0x08, (10, 28, 28), bytes(10 * 784 - 1))
    with pytest.raises(DataError, match=r"images\.idx is truncated.*7840 bytes.*7839"):
        parse_idx(content, "images.idx")


def test_padded_body_is_rejected():
    with pytest.raises(DataError, match="longer than its header says"):
        parse_idx(idx_bytes(0x08, (2,), b"\x00\x00\x00"))


def test_truncated_header_is_rejected():
    with pytest.raises(DataError, match="header needs 16 bytes"):
        parse_idx(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x01")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", bytes([0, 0, 0x42, 1])])
def test_bad_magic_is_rejected(content):
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(content, "x")


def test_truncated_gzip_is_named(tmp_path):
    packed = gzip.compress(idx_bytes(0x08, (1000,), bytes(range(250)) * 4))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"cut\.gz is a truncated or corrupt gzip file"):
        read_bytes(path)


def test_md5_matches_a_known_digest():
    assert md5_hex(b"abc") == "900150983cd24fb0d6963f7d28e17f72"

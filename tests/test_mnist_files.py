"""Finding, fetching and checking the four MNIST files."""

import numpy as np
import pytest
from conftest import checksums_of, write_tiny_mnist

from seqrnn.data import MNIST_FILES, load_mnist, resolve_data_dir
from seqrnn.data.idx import write_idx
from seqrnn.data.mnist import DEFAULT_DATA_DIR, ENV_DATA_DIR
from seqrnn.errors import DataError


def assert_same(arrays, expected):
    for part in MNIST_FILES:
        assert np.array_equal(getattr(arrays, part), expected[part]), part


@pytest.mark.parametrize("gz", [True, False])
def test_loads_raw_or_gzipped_files_with_their_checksums(tmp_path, tiny_arrays, gz):
    folder = write_tiny_mnist(tmp_path, tiny_arrays, gz=gz)
    arrays = load_mnist(folder, download=False, checksums=checksums_of(folder))
    assert_same(arrays, tiny_arrays)


def test_default_checksums_are_mnists_own(tiny_mnist):
    # The tiny random files are not MNIST, so the canonical checksum must reject them.
    with pytest.raises(
        DataError,
        match="train-images-idx3-ubyte.gz fails its checksum.*"
        "expected 6bbc9ace898e44ae57da46a324031adb",
    ):
        load_mnist(tiny_mnist, download=False)


def test_verify_false_skips_the_checksum(tiny_mnist, tiny_arrays):
    assert_same(load_mnist(tiny_mnist, download=False, verify=False), tiny_arrays)


def test_a_corrupt_file_fails_its_checksum(tmp_path, tiny_arrays):
    folder = write_tiny_mnist(tmp_path, tiny_arrays)
    checksums = checksums_of(folder)
    changed = tiny_arrays["test_labels"].copy()
    changed[0] += 1
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", changed)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz fails its checksum"):
        load_mnist(folder, download=False, checksums=checksums)


def test_missing_files_without_download_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=f"missing in {tmp_path}.*data.download=false"):
        load_mnist(tmp_path, download=False)


def test_images_and_labels_must_pair_up(tmp_path, tiny_arrays):
    folder = write_tiny_mnist(
        tmp_path, {**tiny_arrays, "test_labels": tiny_arrays["test_labels"][:5]}
    )
    with pytest.raises(DataError, match=r"test files .* do not pair up"):
        load_mnist(folder, download=False, verify=False)


def test_downloads_missing_files_from_a_mirror(tmp_path, tiny_arrays):
    mirror = write_tiny_mnist(tmp_path / "mirror", tiny_arrays)
    target = tmp_path / "data" / "mnist"
    arrays = load_mnist(target, mirrors=(f"file://{mirror}/",), checksums=checksums_of(mirror))
    assert_same(arrays, tiny_arrays)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{n}.gz" for n in MNIST_FILES.values()
    )


def test_a_bad_download_leaves_nothing_behind(tmp_path, tiny_arrays):
    mirror = write_tiny_mnist(tmp_path / "mirror", tiny_arrays)
    wrong = {name: "0" * 32 for name in MNIST_FILES.values()}
    target = tmp_path / "new" / "mnist"  # two folders made for it: both go again
    expected = r"could not be downloaded \(file://\S+: wrong checksum; file:///nonexistent/"
    with pytest.raises(DataError, match=expected):
        load_mnist(target, mirrors=(f"file://{mirror}/", "file:///nonexistent/"), checksums=wrong)
    assert not (tmp_path / "new").exists()


def test_data_dir_lookup_order(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert resolve_data_dir() == DEFAULT_DATA_DIR
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"


@pytest.mark.integration
def test_real_files_pass_the_canonical_checksums(real_mnist):
    arrays = load_mnist(real_mnist, download=False)
    assert arrays.train_images.shape == (60000, 28, 28)
    assert arrays.test_images.shape == (10000, 28, 28)
    assert arrays.test_labels[:5].tolist() == [7, 2, 1, 0, 4]

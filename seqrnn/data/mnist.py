"""MNIST on disk: where the four IDX files live, fetching them, checking them, binarizing them.

Lookup order for the folder: an explicit ``root``, then ``$SEQRNN_DATA_DIR``, then ``data/mnist``
under the project. A file may be stored raw or gzipped; either way its *uncompressed* content is
checked against the published MD5.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqrnn.data.idx import md5_hex, parse_idx, read_bytes
from seqrnn.errors import ConfigError, DataError

ENV_DATA_DIR = "SEQRNN_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT / "data" / "mnist"

# part name -> canonical file name (without .gz)
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# MD5 of the uncompressed IDX content, by canonical file name.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Public mirrors serving the four files as ``<mirror><name>.gz``, tried in order.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class MNISTArrays:
    """The four MNIST files as arrays: images ``[N, H, W]`` uint8 in 0..255, labels ``[N]``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def resolve_data_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder to read MNIST from: ``root``, else ``$SEQRNN_DATA_DIR``, else ``data/mnist``."""
    if root:
        return Path(root).expanduser()
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    return DEFAULT_DATA_DIR


def find_file(folder: Path, name: str) -> Path | None:
    """The stored copy of ``name`` in ``folder`` (raw or ``.gz``), or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def download_file(
    name: str, folder: Path, mirrors: tuple[str, ...], checksum: str | None, timeout: float = 30.0
) -> Path:
    """Fetch ``<mirror><name>.gz`` into ``folder`` from the first mirror that serves a valid copy.

    The file is written under a temporary name and renamed only once its checksum passes, so a
    failed or interrupted download never leaves a half file behind.
    """
    made = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.gz"
    problems = []
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                out.write(resp.read())
            content = read_bytes(tmp)
            if checksum is not None and md5_hex(content) != checksum:
                problems.append(f"{url}: wrong checksum")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, DataError, ValueError) as err:
            problems.append(f"{url}: {getattr(err, 'reason', err)}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    for path in made:  # leave the disk as it was: the folders made for it, if still empty
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    raise DataError(
        f"MNIST file {name} is missing in {folder} and could not be downloaded "
        f"({'; '.join(problems)}); put the four MNIST IDX files (raw or .gz) in that folder, "
        f"or point data.root or ${ENV_DATA_DIR} at a folder that has them"
    )


def locate_mnist(
    root: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    checksums: dict[str, str] | None = None,
) -> dict[str, Path]:
    """The path of each MNIST part (see ``MNIST_FILES``), fetching missing files when ``download``.

    Cheap when the files are there: nothing is read, so a LightningDataModule can call it from
    ``prepare_data`` on one process before every process reads the files in ``setup``.
    """
    folder = resolve_data_dir(root)
    checksums = MNIST_MD5 if checksums is None else checksums
    paths = {}
    for part, name in MNIST_FILES.items():
        path = find_file(folder, name)
        if path is None:
            if not download:
                raise DataError(
                    f"MNIST file {name}[.gz] is missing in {folder} (downloads are off: "
                    f"data.download=false); put the four MNIST IDX files there, or point "
                    f"data.root or ${ENV_DATA_DIR} at a folder that has them"
                )
            path = download_file(name, folder, mirrors, checksums.get(name) if verify else None)
        paths[part] = path
    return paths


def load_mnist(
    root: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    checksums: dict[str, str] | None = None,
) -> MNISTArrays:
    """Read and check the four MNIST files (fetched first when missing and ``download``).

    Args:
        root: data folder; None uses the lookup order in this module's docstring.
        download: fetch missing files from ``mirrors``.
        verify: compare each file's uncompressed MD5 with ``checksums`` (default: the canonical
            MNIST ones). Turn off only for other data in the same format.
    Raises:
        DataError: a missing file that cannot be fetched, a checksum mismatch, a truncated or
            malformed file, or images and labels of different counts.
    """
    checksums = MNIST_MD5 if checksums is None else checksums
    paths = locate_mnist(root, download, verify, mirrors, checksums)
    arrays = {}
    for part, path in paths.items():
        name = MNIST_FILES[part]
        content = read_bytes(path)
        if verify and name in checksums and md5_hex(content) != checksums[name]:
            raise DataError(
                f"{path} fails its checksum (md5 {md5_hex(content)}, expected {checksums[name]}): "
                "the file is corrupt or not canonical MNIST; replace it, or set data.verify=false "
                "for other data in the MNIST format"
            )
        arrays[part] = parse_idx(content, str(path))
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{split} files in {resolve_data_dir(root)} do not pair up: images "
                f"{list(images.shape)}, labels {list(labels.shape)} (expected [N, H, W] and [N])"
            )
    return MNISTArrays(**arrays)


def binarize(images: np.ndarray, threshold: float = 0.1) -> torch.Tensor:
    """Pixels as {0, 1}: 1 where ``intensity / 255 > threshold``. ``[N, H, W]`` -> uint8 tensor."""
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"data.threshold={threshold!r} is not allowed; it must be in [0, 1)")
    # One lookup per intensity instead of a float copy of the whole set: same rule, 10x faster.
    table = (np.arange(256, dtype=np.float32) / 255.0 > threshold).astype(np.uint8)
    return torch.from_numpy(table[images])

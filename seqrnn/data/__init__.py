"""MNIST as sequences: IDX files, checksums, downloads, binarization and the LightningDataModule."""

from seqrnn.data.base import EVAL_SPLITS, SequenceDataModule
from seqrnn.data.batches import SequenceBatches
from seqrnn.data.datamodule import MNISTSequenceDataModule
from seqrnn.data.dirichlet import DirichletSequenceDataModule
from seqrnn.data.idx import parse_idx, read_bytes, write_idx
from seqrnn.data.mnist import MNIST_FILES, MNIST_MD5, binarize, load_mnist, resolve_data_dir

__all__ = [
    "EVAL_SPLITS",
    "DirichletSequenceDataModule",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNISTSequenceDataModule",
    "SequenceBatches",
    "SequenceDataModule",
    "binarize",
    "load_mnist",
    "parse_idx",
    "read_bytes",
    "resolve_data_dir",
    "write_idx",
]

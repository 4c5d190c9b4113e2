"""Names that several modules share: where outputs go, what a run dir and a study dir hold, how
a run is named, and the MNIST image side.

Plain constants and the standard library only, so that the quick argument checks of the entry
points can use them without loading torch.
"""

import os

# Everything seqrnn writes goes under one folder (docs/usage.md, "Where outputs go"): the
# configs' `paths.root` (conf/paths/default.yaml) is $SEQRNN_OUTPUTS, else outputs/ where the
# command runs; the tools without a config (make bench, the Makefile) read the same.
OUTPUTS_VARIABLE = "SEQRNN_OUTPUTS"
# A run dir's stamp: its start time, to the microsecond so that jobs started in the same second
# never share a dir; the ranks of a torchrun or srun launch agree on one (experiments/_ranks.py)
# and hand it to the run-dir patterns in this variable.
STAMP_VARIABLE = "SEQRNN_RUN_STAMP"
STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S_%f"

# What Hydra and the logger write into every run dir.
HYDRA_DIR = ".hydra"
RUN_CONFIG = f"{HYDRA_DIR}/config.yaml"  # the composed config the run trained with
RUN_OVERRIDES = f"{HYDRA_DIR}/overrides.yaml"  # its command line's overrides
TENSORBOARD_DIR = "tensorboard"
FIGURES_DIR = "figures"  # the PNG figures of a study of a trained model
LOCK_FILE = ".lock"  # held while a run trains (seqrnn/training/lock.py)

# A training run's dir (docs/usage.md, "Where outputs go"): results, and its checkpoints.
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
# the best by callbacks.checkpoint.monitor: the lowest validation loss unless a recipe says else
BEST_CHECKPOINT = f"{CHECKPOINT_DIR}/best.ckpt"
LAST_NAME = "last.ckpt"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/{LAST_NAME}"  # the newest state, to resume from
# What experiments.evaluate writes (and the study ships beside results.json).
EVALUATION_FILE = "evaluation.json"
# A shipped run's config (a run dir holds it as .hydra/config.yaml) and validation curve (a run
# dir: in its TensorBoard events): what the report needs, without the run dir.
SHIPPED_CONFIG_FILE = "config.yaml"
CURVE_FILE = "curve.csv"
# What the studies of trained models write into their dirs.
COMPLETION_FILE = "completion.json"
COMPLETION_SUMMARY = "summary.md"
INPAINT_FILE = "inpaint.json"
POSTERIOR_FILE = "posterior.npz"
ANALYSIS_FILE = "analysis.json"

# MNIST images are IMAGE_SIDE x IMAGE_SIDE pixels, read in IMAGE_SIDE**2 steps in pixel order.
IMAGE_SIDE = 28
# Exact in-painting scores all 2^k fillings of an image's k hidden pixels. At 2^20 (a million
# sequences of 784 steps, ~3 GB of log-probabilities for one image) it is slow already; past
# it, memory runs out: the cap on ``max_hidden``.
MAX_HIDDEN_PIXELS = 20


# The library starts some entry points as processes of their own (the study runs its trainings
# and studies, the GPU check its tiny runs): they are `python -m experiments.<name>`, the same
# commands the manual documents, and this is the one place that spells their module.
ENTRY_PACKAGE = "experiments"


def entry_command(name: str, *args: str) -> list[str]:
    """``[module, *args]`` of the entry point ``name`` (``train``, ``evaluate``, ...), as
    ``python -m`` takes them."""
    return [f"{ENTRY_PACKAGE}.{name}", *args]


def outputs_root() -> str:
    """The folder every run, sweep, search, study and benchmark dir is under."""
    return os.environ.get(OUTPUTS_VARIABLE) or "outputs"


def run_name(task: str, cell: str, size: str, order: str = "pixel") -> str:
    """A run's name, as shipped weights, docs/results and the study's run dirs spell it:
    ``classify-gru-1x128`` (``size``: ``<layers>x<units>``), with the reading order after it
    where it is not pixel order (``classify-gru-1x128-permuted``), so that a model of the other
    benchmark never takes a pixel-order model's name. conf/train.yaml's run dirs follow it too
    (``${task}-${cell}-${layers}x${units}``)."""
    name = f"{task}-{cell}-{size}"
    return name if order == "pixel" else f"{name}-{order}"

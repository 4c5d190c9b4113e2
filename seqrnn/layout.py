"""Names that several modules share: what a run dir and a study dir hold, how a run is named,
and the MNIST image side.

Plain constants, no imports, so that the quick argument checks of the entry points can use them
without loading torch.
"""

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


def run_name(task: str, cell: str, size: str) -> str:
    """A run's name, as shipped weights, docs/results and the study's run dirs spell it:
    ``classify-gru-1x128`` (``size``: ``<layers>x<units>``). conf/train.yaml's run dirs follow
    it too (``${task}-${cell}-${layers}x${units}``)."""
    return f"{task}-{cell}-{size}"

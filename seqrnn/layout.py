"""Names that several modules share: what a run dir holds, and the MNIST image side.

Plain constants, no imports, so that the quick argument checks of the entry points can use them
without loading torch.
"""

# A training run's dir (see DESIGN.md): results, and the checkpoints it keeps.
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
# the best by callbacks.checkpoint.monitor: the lowest validation loss unless a recipe says else
BEST_CHECKPOINT = f"{CHECKPOINT_DIR}/best.ckpt"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/last.ckpt"  # the newest state, to resume from
# What experiments.evaluate writes (and the study ships beside results.json).
EVALUATION_FILE = "evaluation.json"
# A shipped run's config (a run dir holds it as .hydra/config.yaml) and validation curve (a run
# dir: in its TensorBoard events): what the report needs, without the run dir.
SHIPPED_CONFIG_FILE = "config.yaml"
CURVE_FILE = "curve.csv"

# MNIST images are IMAGE_SIDE x IMAGE_SIDE pixels, read in IMAGE_SIDE**2 steps in pixel order.
IMAGE_SIDE = 28

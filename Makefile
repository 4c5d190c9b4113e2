# seqrnn: `make install`, then `make test`; `make train` runs the main job.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch goes in first, pinned, so that no later requirement pulls a multi-GB CUDA build into a
# CPU venv. A GPU user picks their build, e.g.
#   make install TORCH="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126"
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
# `make train ARGS="cell=lstm trainer.max_epochs=3"` passes more Hydra overrides.
ARGS ?=

# The shared MNIST beside the checkout, when there is one (tests, CI and local runs use it).
SHARED_MNIST := $(abspath ../shared/data/mnist)
ifneq ($(wildcard $(SHARED_MNIST)/train-images-idx3-ubyte.gz),)
export SEQRNN_DATA_DIR ?= $(SHARED_MNIST)
endif

# The short default budget of `make train`: one pass over 300 batches of 128 (38,400 of the
# 55,000 training images), then the full evaluation; under 10 minutes on 2 CPU cores.
TRAIN_BUDGET ?= trainer.max_epochs=1 trainer.limit_train_batches=300

# Where everything is written: $SEQRNN_OUTPUTS, else outputs/ (seqrnn/layout.py; the configs'
# paths.root reads the same).
OUTPUTS = $(or $(SEQRNN_OUTPUTS),outputs)
# `make report` reports on the newest sweep; REPORT_DIR=$(OUTPUTS) reports on every run.
REPORT_DIR ?= $(firstword $(shell ls -td $(OUTPUTS)/multirun/*/ 2>/dev/null))

.PHONY: install test train study search tensorboard bench gpu-check report slurm-local postgres-local lint format clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@# Build the fused CPU GRU/LSTM kernels now (about 30 s, cached), not in the first run.
	$(BIN)/python -c "from seqrnn.nn.fused import extension; extension()"
	@$(BIN)/python -c "import torch, lightning, hydra; print('installed: torch', torch.__version__, '| lightning', lightning.__version__, '| hydra', hydra.__version__)"

test:
	$(BIN)/python -m pytest -q

train:
	$(BIN)/python -m experiments.train task=classify cell=gru units=128 $(TRAIN_BUDGET) $(ARGS)

# The whole study, resumable (hours on a CPU; see docs/results): `make study ARGS="dry_run=true"`.
study:
	$(BIN)/python -m experiments.study $(ARGS)

# A recipe search with Optuna: `make search ARGS="search=predict timeout=3600"`.
search:
	$(BIN)/python -m experiments.search $(ARGS)

tensorboard:
	$(BIN)/tensorboard --logdir $(OUTPUTS)

bench:
	$(BIN)/python -m experiments.bench $(ARGS)

# A GPU's one-minute self-check against the CPU (docs/kernels.md): `make gpu-check ARGS="--device cpu"`
# runs the same checks on a CPU alone.
gpu-check:
	$(BIN)/python -m experiments.gpu_check $(ARGS)

report:
	@test -n "$(REPORT_DIR)" || { echo "error: no sweep in $(OUTPUTS)/multirun; give REPORT_DIR=<dir>" >&2; exit 2; }
	$(BIN)/python -m experiments.report $(REPORT_DIR)

# A one-node SLURM cluster on this machine (Debian's slurm-wlm and munge; as root), for trying
# hydra/launcher=slurm_cpu and for the cluster tests: docs/sweeps.md, "Clusters".
slurm-local:
	scripts/slurm-local

# A PostgreSQL server on this machine (Debian's postgresql; as root) for a search whose workers
# share one study, and for the tests that use one: docs/sweeps.md, "Recipe search".
postgres-local:
	scripts/postgres-local

lint:
	$(BIN)/ruff check seqrnn experiments tests
	$(BIN)/ruff format --check seqrnn experiments tests

format:
	$(BIN)/ruff check --fix seqrnn experiments tests
	$(BIN)/ruff format seqrnn experiments tests

# Caches and build leftovers only: runs under outputs/ are the user's and stay.
clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

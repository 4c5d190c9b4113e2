"""seqrnn: GRU and LSTM stacks on MNIST read as a sequence, with Lightning and Hydra.

The library holds the logic and takes plain arguments; ``experiments/`` holds the Hydra entry
points that compose configs and call it.
"""

__version__ = "0.1.0"

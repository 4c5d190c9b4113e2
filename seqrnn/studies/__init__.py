"""Studies of trained models, each from a checkpoint to JSON and figures:

- :mod:`~seqrnn.studies.completion`: sampled completions of images whose end is hidden;
- :mod:`~seqrnn.studies.inpainting`: the exact posterior of hidden pixels, past and future read;
- :mod:`~seqrnn.studies.analysis`: states over time, the read-out per step, the Bayes comparison;
- :mod:`~seqrnn.studies.gates`: hand-set one-unit cells that show what gates can do;
- :mod:`~seqrnn.studies.figures`: the image grids they draw.
"""

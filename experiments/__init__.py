"""The entry points (`python -m experiments.<name>`): each composes its config from conf/ with
Hydra and calls the library.

Importing the package registers the two resolvers the run-dir patterns of conf/ use:
``${seqrnn.outputs:}``, the outputs root, and ``${seqrnn.stamp:}``, a run dir's time stamp
(both from :mod:`seqrnn.layout`)."""

import datetime
import os

from omegaconf import OmegaConf

from seqrnn.layout import STAMP_FORMAT, STAMP_VARIABLE, outputs_root


def _stamp() -> str:
    return os.environ.get(STAMP_VARIABLE) or datetime.datetime.now().strftime(STAMP_FORMAT)


# replace=True: a module reloaded (tests, notebooks) registers them again without an error.
OmegaConf.register_new_resolver("seqrnn.outputs", outputs_root, replace=True)
# use_cache: one stamp per config, however often Hydra resolves its run dir; Hydra copies the
# cache into each job of a sweep, as for its own ${now:...}.
OmegaConf.register_new_resolver("seqrnn.stamp", _stamp, use_cache=True, replace=True)

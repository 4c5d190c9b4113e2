"""Lines for the person running a job: on standard output, and in the job's log file.

An entry point's logging (conf/hydra/default.yaml) sends Python logging to ``<run dir>/<entry
point>.log`` and keeps the console for the entry point's own lines; :func:`tell` writes to
both, so a run dir's ``train.log`` holds the epoch lines and the results that the console
showed, whether or not anyone was watching it.
"""

from __future__ import annotations

import logging

_log = logging.getLogger("seqrnn")


def tell(line: str) -> None:
    """Print ``line`` (flushed: logs that are files show it at once) and log it at INFO."""
    print(line, flush=True)
    _log.info(line)

"""ShareCores: torch's threads follow the cores other processes leave free."""

import subprocess
import sys
import time

import pytest
import torch

from seqrnn.callbacks import ShareCores
from seqrnn.callbacks.share_cores import CpuShare, busy_ticks, own_ticks, threads_for

STAT = """cpu  900 0 900 9000 50 0 0 0 0 0
cpu0 100 5 200 4000 10 3 4 2 0 0
cpu1 300 0 100 5000 40 0 0 0 0 0
intr 12345
"""


def test_busy_ticks_count_only_our_cpus_and_not_idle_or_iowait():
    assert busy_ticks({0}, STAT) == 100 + 5 + 200 + 3 + 4 + 2
    assert busy_ticks({1}, STAT) == 400
    assert busy_ticks({0, 1}, STAT) == 314 + 400


def test_own_ticks_read_user_and_system_time_past_a_name_with_spaces():
    fields = ["S"] + [str(i) for i in range(1, 20)]  # fields 3.. of /proc/<pid>/stat
    fields[11], fields[12] = "70", "5"  # utime, stime
    assert own_ticks("42 (a (weird) name) " + " ".join(fields)) == 75


@pytest.mark.parametrize(
    ("others", "threads"), [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (1.9, 1), (3.0, 1)]
)
def test_threads_for_the_cores_left_between_one_and_the_most(others, threads):
    assert threads_for(2, others, 2) == threads
    assert threads_for(16, others, 4) == 4  # never more than the run started with


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_a_busy_process_is_measured_as_about_one_core_of_others():
    share = CpuShare()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        share.others()  # from here
        time.sleep(1.5)
        others = share.others()
    finally:
        spinner.kill()
    assert others is not None and 0.6 <= others <= len(share.cpus), others


class FakeShare:
    def __init__(self, cores, readings):
        self.cpus, self.readings = set(range(cores)), list(readings)

    def others(self):
        return self.readings.pop(0)


class FakeModule:
    device = torch.device("cpu")


def test_threads_drop_beside_a_busy_process_come_back_after_and_are_restored_at_the_end():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        callback = ShareCores(every_seconds=0.0)
        callback.setup(None, FakeModule(), "fit")
        assert callback.most == 2
        callback.share = FakeShare(2, [1.0, 0.1, 1.2])
        seen = []
        for batch in range(3):
            callback.on_train_batch_start(None, FakeModule(), None, batch)
            seen.append(torch.get_num_threads())
        assert seen == [1, 2, 1]
        callback.teardown(None, FakeModule(), "fit")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_threads_given_are_kept_whatever_the_neighbours_do():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        callback = ShareCores(threads=2, every_seconds=0.0)
        callback.setup(None, FakeModule(), "fit")
        assert callback.share is None
        callback.on_train_batch_start(None, FakeModule(), None, 0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

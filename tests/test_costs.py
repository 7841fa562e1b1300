"""Costs: parameter counts, peak-memory sampling and run-folder training time."""

import mmap
import os
import sys
import time

import pytest
from torch import nn

from xmrlib.costs import PeakRSS, count_parameters, training_seconds


def test_count_parameters_hand_computed():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False))
    assert count_parameters(model) == 3 * 4 + 4 + 4 * 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_peak_rss_sees_a_large_temporary_allocation():
    size = 64 * 2**20
    with PeakRSS(interval=0.001) as mem:
        # an anonymous mapping gets fresh pages: malloc could reuse free heap pages that are
        # already resident (after earlier tests in the same process) and the RSS would not move
        block = mmap.mmap(-1, size)
        for offset in range(0, size, 4096):  # touch every page
            block[offset] = 1
        time.sleep(0.05)
        block.close()
    assert mem.mib > 48  # allowing for a sample missed at the very top


def test_training_seconds_from_file_times(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "done.json").write_text("{}")
    os.utime(tmp_path / "config.json", (100.0, 100.0))
    os.utime(tmp_path / "done.json", (142.5, 142.5))
    assert training_seconds(tmp_path) == pytest.approx(42.5)

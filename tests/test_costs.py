"""Costs: parameter counts, peak-memory sampling and run-folder training time."""

import os
import sys
import time

import numpy as np
import pytest
from torch import nn

from xmrlib.costs import PeakRSS, count_parameters, training_seconds


def test_count_parameters_hand_computed():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False))
    assert count_parameters(model) == 3 * 4 + 4 + 4 * 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_peak_rss_sees_a_large_temporary_allocation():
    with PeakRSS(interval=0.001) as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert mem.mib > 48  # allowing for pages the allocator already held


def test_training_seconds_from_file_times(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "done.json").write_text("{}")
    os.utime(tmp_path / "config.json", (100.0, 100.0))
    os.utime(tmp_path / "done.json", (142.5, 142.5))
    assert training_seconds(tmp_path) == pytest.approx(42.5)

"""What a model costs: training time from its run folder, parameters, peak memory of a call."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch import nn


def training_seconds(run_dir: str | Path) -> float:
    """Wall time of a run: from its ``config.json`` (written at the start) to ``done.json``.

    For a run that was interrupted and resumed, this is the last stretch only.
    """
    run_dir = Path(run_dir)
    return (run_dir / "done.json").stat().st_mtime - (run_dir / "config.json").stat().st_mtime


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


class PeakRSS:
    """Context manager: peak resident memory above the starting level, in MiB (``.mib``).

    A background thread samples ``/proc/self/statm`` every ``interval`` seconds (Linux; ``nan``
    elsewhere). ``tracemalloc`` would miss PyTorch's tensor buffers. A peak shorter than the
    interval can be missed and memory kept by the allocator from earlier work is not counted
    again, so the figure is a lower bound.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.mib = float("nan")

    @staticmethod
    def _rss() -> float:
        statm = Path("/proc/self/statm")
        return int(statm.read_text().split()[1]) * 4096 if statm.exists() else float("nan")

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = (max(self.peak, self._rss()) - self.start) / 2**20


class PeakMemory:
    """Context manager: peak memory of the body above the level at entry, in MiB (``.mib``),
    on the device that does the work.

    On CUDA it is the allocator's peak (``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``, the device synchronised at both ends): tensors the body
    allocates on the GPU, exact, whatever the host does. On any other device it is the
    host's peak resident memory (:class:`PeakRSS`, a lower bound). ``.kind`` says which
    (``"cuda allocator"`` or ``"host RSS"``), so a table can label its column.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.kind = "cuda allocator" if self.device.type == "cuda" else "host RSS"
        self.mib = float("nan")
        self._rss = PeakRSS()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._rss.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
        else:
            self._rss.__exit__(*exc)
            self.mib = self._rss.mib

"""Small shared helpers: devices, seeding, paths, atomic writes, config hashing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def local_rank() -> int | None:
    """This process's GPU slot under ``torchrun`` (``LOCAL_RANK`` with ``WORLD_SIZE > 1``), else
    ``None``. torchrun starts one process per GPU of a node and numbers them ``0..n-1`` there."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to use.

    * ``"auto"`` picks ``cuda`` when a GPU is usable, else the CPU. On a CPU-only build of torch
      the CPU is the expected choice and nothing is said; when torch was built with CUDA but no
      GPU can be used (no driver, ``CUDA_VISIBLE_DEVICES`` empty) it warns (``RuntimeWarning``)
      and falls back to the CPU, since a GPU was probably expected.
    * Under ``torchrun`` (:func:`local_rank` is not ``None``), ``"auto"`` and ``"cuda"`` mean
      this process's GPU, ``cuda:LOCAL_RANK`` (as open_clip's ``init_distributed_device``): a
      device without an index would put every rank on GPU 0. Call :func:`set_device` with the
      result so that kernels, NCCL and ``torch.cuda`` calls without an index use it too.
    * An explicit device that is not there is an error (``ValueError``), never a silent CPU
      run: ``"cuda"`` without CUDA, ``"cuda:N"`` with N >= the number of GPUs (or a torchrun
      ``LOCAL_RANK`` >= it), ``"mps"`` without MPS, or a name that is not ``auto``, ``cpu``,
      ``cuda[:N]`` or ``mps``.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return resolve_device("cuda")
        if torch.backends.cuda.is_built():
            warnings.warn("device='auto': this torch has CUDA support but no GPU is usable here; "
                          "running on the CPU", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match:
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but CUDA is not available here; "
                             "use device='auto' or 'cpu'")
        count, rank = torch.cuda.device_count(), local_rank()
        if match.group(1) is None and rank is not None:
            if rank >= count:
                raise ValueError(f"torchrun gave this process LOCAL_RANK={rank}, but this machine "
                                 f"has {count} GPU(s): start at most {count} processes per node")
            return torch.device("cuda", rank)
        index = int(match.group(1) or 0)
        if index >= count:
            raise ValueError(f"device={device!r} was asked for, but this machine has {count} "
                             f"GPU(s) (cuda:0 to cuda:{count - 1})")
        return torch.device("cuda", index) if match.group(1) else torch.device("cuda")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was asked for, but MPS is not available here; "
                         "use device='auto' or 'cpu'")
    if device not in ("cpu", "mps"):
        raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda[:N]' or 'mps'")
    return torch.device(device)


def set_device(device: torch.device) -> None:
    """Make ``device`` the current CUDA device of this process (nothing for other devices).

    ``torch.cuda.set_device`` is what makes a bare ``"cuda"``, ``torch.cuda.*`` calls and the
    NCCL communicator of a torchrun rank use that rank's GPU rather than GPU 0.
    """
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device.index)


def device_name(device: torch.device) -> str:
    """Human-readable name of a device (GPU model or 'cpu')."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_determinism(device: torch.device, strict: bool | None = None) -> None:
    """Deterministic GPU kernels where they are cheap; all of them with ``strict`` (``None``:
    when the environment variable ``XMR_DETERMINISTIC`` is ``1``).

    On CUDA, cuDNN's RNN and convolution kernels are chosen deterministically and not by timing
    (``cudnn.deterministic``, no ``cudnn.benchmark``): for the book's GRU/LSTM and 1-D CNN this
    costs little. What remains non-deterministic on a GPU are the atomic additions in the
    backward pass of gathers (``x[idx]``, embedding lookups, ``index_put``): the order in which
    floats are added varies, so two runs (or an interrupted and a resumed run) agree to rounding
    after one step and drift apart slowly. ``strict=True`` also calls
    ``torch.use_deterministic_algorithms(True)`` (slower sort-based backward kernels, and an error
    for an operation that has no deterministic version); on CUDA it needs the environment
    variable ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before the first matrix product, which is
    set here when absent. The CPU kernels the book uses are deterministic already.
    """
    if strict is None:
        strict = os.environ.get("XMR_DETERMINISTIC") == "1"
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if strict:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def repo_root() -> Path:
    """The repository root (the folder that holds ``xmrlib/``)."""
    return Path(__file__).resolve().parents[1]


def build_dir() -> Path:
    """Git-ignored folder for generated data, runs and executed notebooks.

    ``XMR_BUILD_DIR`` overrides it (tests use a temporary folder).
    """
    return Path(os.environ.get("XMR_BUILD_DIR", repo_root() / "build"))


def config_hash(obj: Any, n: int = 12) -> str:
    """Stable short hash of a JSON-able object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text so that a reader never sees a half-written file (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lock_path(name: str) -> Path:
    """The lock file of a shared cache entry ``name`` (a run folder's, a data folder's, a feature
    store's name): ``build_dir()/locks/<name>.lock``, apart from the caches themselves, so that
    a listing of ``build/runs`` holds run folders only."""
    return build_dir() / "locks" / f"{name}.lock"


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file ``path`` (created if missing) while the block
    runs, so that processes building the same cached thing (a run folder, a data set, a feature
    store) take turns: the second finds the first's result. POSIX ``flock``; where ``fcntl`` is
    missing (Windows) there is no lock, and chapters must not run in parallel there."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Atomically ``torch.save`` (temp file + rename), so a kill never leaves a torn checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


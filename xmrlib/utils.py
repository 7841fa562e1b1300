"""Small shared helpers: devices, seeding, paths, atomic writes, config hashing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to use.

    * ``"auto"`` picks ``cuda`` when a GPU is usable, else the CPU. On a CPU-only build of torch
      the CPU is the expected choice and nothing is said; when torch was built with CUDA but no
      GPU can be used (no driver, ``CUDA_VISIBLE_DEVICES`` empty) it warns (``RuntimeWarning``)
      and falls back to the CPU, since a GPU was probably expected.
    * An explicit device that is not there is an error (``ValueError``), never a silent CPU
      run: ``"cuda"`` without CUDA, ``"cuda:N"`` with N >= the number of GPUs, ``"mps"``
      without MPS, or a name that is not ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.cuda.is_built():
            warnings.warn("device='auto': this torch has CUDA support but no GPU is usable here; "
                          "running on the CPU", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match:
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but CUDA is not available here; "
                             "use device='auto' or 'cpu'")
        index, count = int(match.group(1) or 0), torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"device={device!r} was asked for, but this machine has {count} "
                             f"GPU(s) (cuda:0 to cuda:{count - 1})")
        return torch.device(device)
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was asked for, but MPS is not available here; "
                         "use device='auto' or 'cpu'")
    if device not in ("cpu", "mps"):
        raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda[:N]' or 'mps'")
    return torch.device(device)


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


"""Small shared helpers: devices, seeding, paths, atomic writes, config hashing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return a torch device: ``"auto"`` picks CUDA when present, else CPU.

    An explicit ``"cuda"`` on a machine without CUDA raises ``ValueError``.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available here; "
                         "use device='auto' or 'cpu'")
    if device not in ("cpu",) and not device.startswith("cuda") and device != "mps":
        raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu' or 'cuda[:N]'")
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


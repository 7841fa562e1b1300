"""Run folders on disk: what :func:`xmrlib.train.fit` writes there and how it is read back.

A run folder (CONTRIBUTING.md) holds ``config.json``, ``history.json``, ``history_steps.csv``,
``history_epochs.csv``, ``checkpoint_last.pt`` (every epoch and every ``ckpt_every_steps``),
``model_best.pt`` and ``done.json``. A checkpoint holds the model, the optimiser, the scheduler,
the RNG states (python, numpy, torch, the loader's generator), the position in the epoch and the
history, so a resumed run ends with the same weights and history as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmrlib.models import build_model
from xmrlib.utils import (atomic_torch_save, atomic_write_json, atomic_write_text, config_hash,
                          resolve_device)

#: Keys of ``checkpoint_last.pt`` and of ``model_best.pt``.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "step_in_epoch",
                   "epoch_rng", "history", "best_rsum", "best_epoch")
BEST_KEYS = ("model", "name", "config", "epoch", "metrics")


# --------------------------------------------------------------------------- RNG state

def _loader_generator(loader: Any) -> torch.Generator | None:
    """The torch generator that shuffles ``loader``, if it has one."""
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator):
            return gen
    return None


def rng_state(loader: Any) -> dict[str, Any]:
    """The RNG states of python, numpy, torch, CUDA and the loader's shuffling generator."""
    gen = _loader_generator(loader)
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "loader": gen.get_state() if gen is not None else None}


def set_rng_state(state: dict[str, Any], loader: Any) -> None:
    """Restore what :func:`rng_state` returned (the loader's generator, if it has one).

    Generator states must be CPU byte tensors (a checkpoint read with ``map_location`` on a GPU
    would have moved them there), so they are copied to the host first. CUDA states are saved
    for every visible GPU: they are restored for the GPUs that are here (a run saved on 8 GPUs
    resumes on 1; a CPU run resumed on a GPU has none and keeps the seeded state)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)
    gen = _loader_generator(loader)
    if gen is not None and state["loader"] is not None:
        gen.set_state(state["loader"].cpu())


# --------------------------------------------------------------------------- writing

def _csv_text(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_history(run_dir: Path, history: dict[str, list[dict[str, Any]]]) -> None:
    """``history.json`` and its two CSV views (per step, per epoch)."""
    atomic_write_json(run_dir / "history.json", history)
    atomic_write_text(run_dir / "history_steps.csv", _csv_text(history["steps"]))
    atomic_write_text(run_dir / "history_epochs.csv", _csv_text(history["epochs"]))


def run_config(model: nn.Module, cfg: Any, data_id: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """The JSON of a run: model name and config, training config, data identity."""
    return {"model": {"name": model.name, "config": model.config}, "train": asdict(cfg),
            "data": data_id or {}}


def check_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to resume a run folder written for a different configuration."""
    path = run_dir / "config.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete the run folder or use "
                         "resume=False") from exc
    if config_hash(old) != config_hash(json.loads(json.dumps(config, default=str))):
        changed = sorted(k for k in set(old) | set(config)
                         if config_hash(old.get(k)) != config_hash(config.get(k)))
        raise ValueError(f"{path}: the run folder holds a run with a different configuration "
                         f"(differs in {changed}); use another run_dir or resume=False")


def best_state(model: nn.Module, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
    """The content of ``model_best.pt`` (:data:`BEST_KEYS`): enough to rebuild the model."""
    return {"model": model.state_dict(), "name": model.name, "config": model.config,
            "epoch": epoch, "metrics": metrics}


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, loader: Any, history: dict, epoch: int, step_in_epoch: int,
                    epoch_rng: dict | None, best_rsum: float, best_epoch: int) -> None:
    """``epoch``/``step_in_epoch``: where to continue; ``epoch_rng``: RNG at that epoch's start."""
    atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "rng": rng_state(loader),
                       "epoch": epoch, "step_in_epoch": step_in_epoch, "epoch_rng": epoch_rng,
                       "history": history, "best_rsum": best_rsum, "best_epoch": best_epoch},
                      path)


# --------------------------------------------------------------------------- reading

def load_checkpoint(path: str | Path, device: torch.device, keys: tuple[str, ...]
                    ) -> dict[str, Any]:
    """``torch.load`` a checkpoint of :func:`fit`; a missing, torn or foreign file is a
    ``ValueError`` (``FileNotFoundError`` when absent) naming the file and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a torn file
        raise ValueError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from exc
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise ValueError(f"{path}: not a checkpoint of xmrlib.train.fit (missing "
                         f"{', '.join(missing)})")
    return state


def load_run(run_dir: str | Path, device: str | torch.device = "auto") -> nn.Module:
    """Rebuild the best model of a run folder (``model_best.pt``), in eval mode."""
    path = Path(run_dir) / "model_best.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no best model here (expected a run folder written by "
                                "xmrlib.train.fit that finished at least one epoch)")
    dev = resolve_device(device)
    state = load_checkpoint(path, dev, BEST_KEYS)
    model = build_model(state["name"], **state["config"])
    model.load_state_dict(state["model"])
    return model.to(dev).eval()


def load_history(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The ``history.json`` of a run folder: ``{"steps": [...], "epochs": [...]}``."""
    path = Path(run_dir) / "history.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no history (the run has not finished an epoch)")
    return json.loads(path.read_text(encoding="utf-8"))

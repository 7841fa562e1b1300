"""Training: a seeded, resumable loop shared by every model of the book, single process or DDP.

``fit`` trains any model that follows the model contract (``model.loss(batch, progress)``) with
Adam, a step learning-rate schedule and gradient clipping (as ``fartashf/vsepp`` does), evaluates
on the dev split after every epoch and keeps the model with the best dev ``rsum``. Everything it
does is written to a *run folder* (CONTRIBUTING.md): ``config.json``, ``history.json``,
``history_steps.csv``, ``history_epochs.csv``, ``checkpoint_last.pt`` (every epoch and every
``ckpt_every_steps``), ``model_best.pt`` and ``done.json``. A checkpoint holds the model, the
optimiser, the scheduler, the RNG states (python, numpy, torch, the loader's generator), the
position in the epoch and the history, so ``resume=True`` continues an interrupted run to the
same final weights and history as an uninterrupted one.

``fit_or_load`` keys run folders by a hash of (model, training config, data identity), so a later
chapter asking for the same run reuses the checkpoint instead of training again.

**Several processes.** Under ``torchrun --nproc_per_node N`` (``RANK``/``WORLD_SIZE`` set), ``fit``
joins a process group (gloo on CPU, nccl on CUDA), wraps the model in DistributedDataParallel
and expects a loader sharded by rank (``make_loader(..., rank=, world_size=)``). With
``gather_negatives`` every rank all-gathers the embeddings of the global batch (the local slot
keeps its gradient) and scores all of it. This matters for VSE++: its loss uses the *hardest*
negative of the batch, and the hardest among N x b candidates is not the hardest among b, so
without gathering N processes train a different (easier) objective than one process on the
global batch, and the batch-size effect the paper relies on is lost. The losses are *sums* over
the batch while DDP *averages* gradients over ranks, so each rank scales its loss by N: with
gathering every rank computes the global loss but back-propagates only through its own
embeddings, and the N partial gradients add up to the global one.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from xmrlib.evaluation import evaluate
from xmrlib.models import build_model
from xmrlib.utils import (atomic_torch_save, atomic_write_json, atomic_write_text, build_dir,
                          config_hash, resolve_device, seed_everything)


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults are VSE++'s (Adam 2e-4, 30 epochs, x0.1 at 15, batch 128,
    clip 2); chapters take smaller values from :mod:`xmrlib.config` for the CPU profiles."""

    epochs: int = 30
    lr: float = 2e-4
    lr_update: int | None = 15  # multiply the lr by lr_gamma every lr_update epochs (None: never)
    lr_gamma: float = 0.1
    grad_clip: float = 2.0  # max gradient norm (0: no clipping)
    batch_size: int = 128
    ckpt_every_steps: int = 0  # also checkpoint within an epoch every N steps (0: epoch ends only)
    seed: int = 0
    amp: str = "auto"  # "auto": bfloat16 autocast on CUDA; "bf16": also on CPU; "off"
    log_every: int = 50  # steps between progress-bar updates of the running loss
    eval_protocol: str = "1k"
    eval_batch_size: int = 128
    gather_negatives: bool = True  # DDP: all-gather embeddings so negatives are global

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict, naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)}: "
                             f"expected some of {sorted(known)}")
        return cls(**values)


@dataclass
class FitResult:
    """What ``fit`` returns: the best model (loaded), its history and where it lives."""

    model: nn.Module
    history: dict[str, list[dict[str, float]]]
    run_dir: Path
    best_epoch: int
    best_metrics: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- distributed

def dist_env() -> tuple[int, int]:
    """(rank, world_size) of this process: from the process group, else torchrun's env vars."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join torchrun's process group when ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA)."""
    rank, world = dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (n_r, ...) of every rank in rank order -> (sum n_r, ...).

    The other ranks' parts are constants; this rank's part is ``x`` itself, so gradients flow
    to the local embeddings. Ranks may hold different batch sizes (a short last batch).
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    n_max = int(max(s.item() for s in sizes))
    padded = x.new_zeros((n_max, *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    parts = [p[: int(s.item())] for p, s in zip(parts, sizes)]
    parts[rank] = x
    return torch.cat(parts)


class _LossModule(nn.Module):
    """Routes ``model.loss`` through ``forward`` so that DDP's hooks see the call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor], progress: float,
                gather: bool) -> tuple[Tensor, dict[str, float]]:
        if gather:
            return self.model.loss(batch, progress, gather=all_gather_with_grad)
        return self.model.loss(batch, progress)


# --------------------------------------------------------------------------- helpers

def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _autocast(cfg: TrainConfig, device: torch.device):
    """bfloat16 autocast: on CUDA for ``amp="auto"``, on any device for ``"bf16"``."""
    if cfg.amp not in ("auto", "bf16", "off"):
        raise ValueError(f"TrainConfig.amp must be 'auto', 'bf16' or 'off', got {cfg.amp!r}")
    if cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _loader_generator(loader: Any) -> torch.Generator | None:
    """The torch generator that shuffles ``loader``, if it has one."""
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator):
            return gen
    return None


def _set_epoch(loader: Any, epoch: int) -> None:
    """Tell samplers that reshuffle per epoch (DistributedSampler style) which epoch it is."""
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


def _rng_state(loader: Any) -> dict[str, Any]:
    gen = _loader_generator(loader)
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "loader": gen.get_state() if gen is not None else None}


def _set_rng_state(state: dict[str, Any], loader: Any) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen = _loader_generator(loader)
    if gen is not None and state["loader"] is not None:
        gen.set_state(state["loader"])


def _csv_text(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write_history(run_dir: Path, history: dict[str, list[dict[str, Any]]]) -> None:
    atomic_write_json(run_dir / "history.json", history)
    atomic_write_text(run_dir / "history_steps.csv", _csv_text(history["steps"]))
    atomic_write_text(run_dir / "history_epochs.csv", _csv_text(history["epochs"]))


def run_config(model: nn.Module, cfg: TrainConfig, data_id: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """The JSON of a run: model name and config, training config, data identity."""
    return {"model": {"name": model.name, "config": model.config}, "train": asdict(cfg),
            "data": data_id or {}}


def _check_config(run_dir: Path, config: dict[str, Any]) -> None:
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


def _best_state(model: nn.Module, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
    return {"model": model.state_dict(), "name": model.name, "config": model.config,
            "epoch": epoch, "metrics": metrics}


# --------------------------------------------------------------------------- fit

def fit(model: nn.Module, train_loader: Any, dev_data: Any, cfg: TrainConfig,
        run_dir: str | Path, resume: bool = True, device: str | torch.device = "auto",
        progress: bool = True, data_id: dict[str, Any] | None = None,
        max_steps: int | None = None) -> FitResult:
    """Train ``model`` on ``train_loader``, select on ``dev_data`` rsum, write ``run_dir``.

    ``resume=True`` continues from ``checkpoint_last.pt`` (or returns a finished run from
    ``model_best.pt``); ``resume=False`` starts over. ``max_steps`` stops this call after that
    many optimiser steps, leaving the checkpoint of the last completed ``ckpt_every_steps``
    block or epoch, as a killed process would (used to test resuming). ``dev_data=None`` skips
    evaluation and keeps the last epoch. Returns the best model on ``device``, in eval mode.
    """
    dev = resolve_device(device)
    rank, world = init_distributed(dev)
    run_dir = Path(run_dir)
    config = run_config(model, cfg, data_id)
    ckpt_path = run_dir / "checkpoint_last.pt"
    if not resume and rank == 0 and run_dir.exists():
        for name in ("checkpoint_last.pt", "model_best.pt", "done.json", "config.json"):
            (run_dir / name).unlink(missing_ok=True)
    if resume:
        _check_config(run_dir, config)
        if (run_dir / "done.json").exists():
            return load_fit_result(run_dir, device=dev, model=model)
    if rank == 0:
        atomic_write_json(run_dir / "config.json", config)

    seed_everything(cfg.seed)
    model.to(dev)
    wrapped: nn.Module = _LossModule(model)
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[dev.index or 0] if dev.type == "cuda" else None)
    gather = world > 1 and cfg.gather_negatives
    if gather and "gather" not in inspect.signature(model.loss).parameters:
        raise ValueError(f"model {model.name!r} cannot gather negatives across ranks "
                         "(its loss has no 'gather' argument): set gather_negatives=False")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.lr_update or 10**9, gamma=cfg.lr_gamma)
    history: dict[str, list[dict[str, Any]]] = {"steps": [], "epochs": []}
    start_epoch, skip, best_rsum, best_epoch = 0, 0, -float("inf"), -1
    epoch_rng: dict[str, Any] | None = None
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, dev, CHECKPOINT_KEYS)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, best_rsum, best_epoch = ckpt["history"], ckpt["best_rsum"], ckpt["best_epoch"]
        start_epoch, skip, epoch_rng = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["epoch_rng"]
        resume_rng = ckpt["rng"]
        if not skip:
            _set_rng_state(resume_rng, train_loader)

    steps_per_epoch = len(train_loader)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    steps_done = 0
    for epoch in range(start_epoch, cfg.epochs):
        _set_epoch(train_loader, epoch)
        if skip and epoch_rng is not None:
            _set_rng_state(epoch_rng, train_loader)  # the order of the interrupted epoch
        epoch_rng = _rng_state(train_loader)
        batches = iter(train_loader)
        for _ in range(skip):
            next(batches)
        if skip:
            _set_rng_state(resume_rng, train_loader)
        wrapped.train()
        bar = _progress_bar(progress and rank == 0, steps_per_epoch, skip, f"epoch {epoch + 1}")
        for step_in_epoch, batch in enumerate(batches, start=skip):
            global_step = epoch * steps_per_epoch + step_in_epoch
            batch = _to_device(batch, dev)
            with _autocast(cfg, dev):
                loss, info = wrapped(batch, global_step / total_steps, gather)
            optimizer.zero_grad(set_to_none=True)
            (loss * world).backward()  # DDP averages over ranks; our losses are sums
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            history["steps"].append({"step": global_step + 1, "epoch": epoch + 1,
                                     "loss": float(loss.detach()),
                                     "lr": optimizer.param_groups[0]["lr"], **info})
            steps_done += 1
            if bar is not None:
                bar.update(1)
                if (step_in_epoch + 1) % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            done_in_epoch = step_in_epoch + 1
            if (cfg.ckpt_every_steps and done_in_epoch % cfg.ckpt_every_steps == 0
                    and done_in_epoch < steps_per_epoch and rank == 0):
                _save_checkpoint(ckpt_path, model, optimizer, scheduler, train_loader, history,
                                 epoch, done_in_epoch, epoch_rng, best_rsum, best_epoch)
            if max_steps is not None and steps_done >= max_steps:
                if bar is not None:
                    bar.close()
                return _interrupted(run_dir, model, history, best_epoch)
        if bar is not None:
            bar.close()
        skip = 0
        history["epochs"].append({"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
                                  "lr": optimizer.param_groups[0]["lr"]})
        scheduler.step()
        metrics = _evaluate(model, dev_data, cfg, dev) if rank == 0 else {}
        history["epochs"][-1].update(metrics)
        if rank == 0:
            rsum = metrics.get("rsum", float(epoch))  # no dev data: keep the last epoch
            if rsum > best_rsum:
                best_rsum, best_epoch = rsum, epoch + 1
                atomic_torch_save(_best_state(model, best_epoch, metrics), run_dir / "model_best.pt")
            _save_checkpoint(ckpt_path, model, optimizer, scheduler, train_loader, history,
                             epoch + 1, 0, None, best_rsum, best_epoch)
            _write_history(run_dir, history)
    if rank == 0:
        atomic_write_json(run_dir / "done.json", {"epochs": cfg.epochs, "best_epoch": best_epoch,
                                                  "best_rsum": best_rsum,
                                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if world > 1:
        dist.barrier()
    return load_fit_result(run_dir, device=dev, model=model)


def _progress_bar(enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False)


def _evaluate(model: nn.Module, dev_data: Any, cfg: TrainConfig,
              device: torch.device) -> dict[str, float]:
    if dev_data is None:
        return {}
    model.eval()
    with torch.no_grad():
        metrics = evaluate(model, dev_data, protocol=cfg.eval_protocol,
                           batch_size=cfg.eval_batch_size, device=device)
    model.train()
    return {f"dev_{k}" if k != "rsum" else "rsum": float(v) for k, v in metrics.items()}


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, loader: Any, history: dict, epoch: int, step_in_epoch: int,
                     epoch_rng: dict | None, best_rsum: float, best_epoch: int) -> None:
    """``epoch``/``step_in_epoch``: where to continue; ``epoch_rng``: RNG at that epoch's start."""
    atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "rng": _rng_state(loader),
                       "epoch": epoch, "step_in_epoch": step_in_epoch, "epoch_rng": epoch_rng,
                       "history": history, "best_rsum": best_rsum, "best_epoch": best_epoch},
                      path)


def _interrupted(run_dir: Path, model: nn.Module, history: dict,
                 best_epoch: int) -> FitResult:
    return FitResult(model=model, history=history, run_dir=run_dir, best_epoch=best_epoch)


# --------------------------------------------------------------------------- loading

#: Keys of ``checkpoint_last.pt`` and of ``model_best.pt``.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "step_in_epoch",
                   "epoch_rng", "history", "best_rsum", "best_epoch")
BEST_KEYS = ("model", "name", "config", "epoch", "metrics")


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


def load_fit_result(run_dir: str | Path, device: str | torch.device = "auto",
                    model: nn.Module | None = None) -> FitResult:
    """A finished run as a ``FitResult`` (into ``model`` when given, else rebuilt)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    state = load_checkpoint(run_dir / "model_best.pt", dev, BEST_KEYS)
    if model is None:
        model = build_model(state["name"], **state["config"])
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    return FitResult(model=model, history=load_history(run_dir), run_dir=run_dir,
                     best_epoch=state["epoch"], best_metrics=state["metrics"])


# --------------------------------------------------------------------------- reuse

def data_identity(data: Any) -> dict[str, Any]:
    """What identifies a training split: the Shapes manifest when there is one, else its
    folder, split and sizes."""
    ident = {"split": data.split, "n_images": int(len(data.images)),
             "n_captions": len(data.captions)}
    if data.manifest:
        return {**ident, "manifest": config_hash(data.manifest)}
    return {**ident, "root": str(Path(data.root).resolve())}


def run_data_identity(train_data: Any, dev_data: Any = None) -> dict[str, Any]:
    """:func:`data_identity` of the training split plus, under ``"dev"``, that of the dev split
    that selects the epoch (epochs selected on another dev set make another run)."""
    ident = data_identity(train_data)
    if dev_data is not None:
        ident["dev"] = data_identity(dev_data)
    return ident


def run_dir_for(model_name: str, model_config: dict[str, Any], cfg: TrainConfig,
                data_id: dict[str, Any], root: str | Path | None = None) -> Path:
    """``build/runs/<model>-<hash>``: the folder ``fit_or_load`` uses for this run."""
    key = config_hash({"model": {"name": model_name, "config": model_config},
                       "train": asdict(cfg), "data": data_id})
    return Path(root or build_dir() / "runs") / f"{model_name}-{key}"


def fit_or_load(model_name: str, model_config: dict[str, Any], train_data: Any, dev_data: Any,
                cfg: TrainConfig, device: str | torch.device = "auto", progress: bool = True,
                root: str | Path | None = None) -> FitResult:
    """Train ``model_name`` on ``train_data`` unless the same run exists; then just load it.

    The run folder is keyed by a hash of the model's full config (defaults included), ``cfg``
    and the identity of the training and dev data; an interrupted run resumes. Under torchrun
    the loader is sharded by rank.
    """
    from xmrlib.data import make_loader

    rank, world = dist_env()
    data_id = run_data_identity(train_data, dev_data)
    if world > 1:  # N processes of batch_size each: a different run from one process
        data_id["world_size"] = world
    seed_everything(cfg.seed)
    model = build_model(model_name, **model_config)
    run_dir = run_dir_for(model_name, model.config, cfg, data_id, root)  # defaults included
    loader = make_loader(train_data, model.tokenize, cfg.batch_size, shuffle=True,
                         seed=cfg.seed, rank=rank, world_size=world)
    return fit(model, loader, dev_data, cfg, run_dir, resume=True, device=device,
               progress=progress, data_id=data_id)


def chapter_train_config(chapter: str, profile: str, seed: int = 0, **overrides: Any
                         ) -> TrainConfig:
    """The ``TrainConfig`` of a chapter's profile (:mod:`xmrlib.config`), e.g. chapter "03"."""
    from xmrlib.config import chapter_config

    c = chapter_config(chapter, profile)
    values = dict(epochs=c["epochs"], lr=c["lr"], lr_update=c["lr_update"],
                  batch_size=c["batch_size"], seed=seed, eval_protocol=c["protocol"],
                  eval_batch_size=c["eval_batch_size"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(values)


def chapter_model_config(chapter: str, profile: str, train_data: Any, **overrides: Any
                         ) -> dict[str, Any]:
    """Constructor arguments of a chapter's dual encoder: vocabulary of the *train* captions,
    feature size of the data, embedding sizes and margin of the chapter's profile."""
    from xmrlib.config import chapter_config
    from xmrlib.vocab import Vocabulary

    c = chapter_config(chapter, profile)
    config = dict(vocab=Vocabulary.build(train_data.captions).to_dict(),
                  img_dim=int(train_data.images.shape[-1]), embed_size=c["embed_size"],
                  word_dim=c["word_dim"], margin=c["margin"])
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def fit_chapter_model(chapter: str, model_name: str, train_data: Any, dev_data: Any,
                      profile: str, seed: int = 0, device: str | torch.device = "auto",
                      progress: bool = True, train_overrides: dict[str, Any] | None = None,
                      **model_overrides: Any) -> FitResult:
    """Train (or reuse) the run a chapter defines, e.g. ``fit_chapter_model("03", "vsepp", ...)``.

    Later chapters call it with the same arguments to get chapter 03's VSE++ without training.
    """
    cfg = chapter_train_config(chapter, profile, seed=seed, **(train_overrides or {}))
    config = chapter_model_config(chapter, profile, train_data, **model_overrides)
    return fit_or_load(model_name, config, train_data, dev_data, cfg, device=device,
                       progress=progress)


def main(argv: list[str] | None = None) -> int:
    """CLI: train a chapter's dual encoder, e.g. on several GPUs with
    ``torchrun --nproc_per_node 4 -m xmrlib.train --chapter 03 --model vsepp --profile full
    --dataset f30k_precomp --data-root DIR``; prints the run folder and the best dev metrics."""
    import argparse
    import sys

    from xmrlib.config import chapter_config
    from xmrlib.data import get_dataset, load_precomp

    p = argparse.ArgumentParser(prog="python -m xmrlib.train", description=main.__doc__)
    p.add_argument("--chapter", default="03", choices=["02", "03"])
    p.add_argument("--model", default="vsepp", choices=["vse", "vsepp"])
    p.add_argument("--profile", default="default")
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vse0", action="store_true", help="VSE0 flags: sum loss, no image norm")
    p.add_argument("--no-gather", action="store_true", help="DDP: negatives from the local batch")
    args = p.parse_args(argv)
    try:
        resolve_device(args.device)  # an unavailable device fails before any data is made
        chapter_config(args.chapter, args.profile)  # an unknown profile too
        root = get_dataset(args.dataset, data_root=args.data_root, profile=args.profile)
        train, dev = load_precomp(root, "train"), load_precomp(root, "dev")
        flags = {"max_violation": False, "image_norm": False} if args.vse0 else {}
        result = fit_chapter_model(args.chapter, args.model, train, dev, args.profile,
                                   seed=args.seed, device=args.device,
                                   train_overrides={"gather_negatives": not args.no_gather},
                                   **flags)
    except (ValueError, FileNotFoundError) as exc:  # DataError, unknown profile, bad device ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if dist_env()[0] == 0:
        print(result.run_dir, json.dumps(result.best_metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

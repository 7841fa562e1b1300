"""Training: a seeded, resumable loop shared by every model of the book, single process or DDP.

``fit`` trains any model that follows the model contract (``model.loss(batch, progress)``) with
Adam, a step learning-rate schedule and gradient clipping (as ``fartashf/vsepp`` does), evaluates
on the dev split after every epoch and keeps the model with the best dev ``rsum``. Everything it
does is written to a *run folder* (:mod:`xmrlib.checkpoint`), so ``resume=True`` continues an
interrupted run to the same final weights and history as an uninterrupted one. Under
``torchrun`` it trains with DistributedDataParallel (:mod:`xmrlib.distributed`).

The run cache (``fit_or_load``) and the chapters' runs live in :mod:`xmrlib.runs`; their old
names here still work.
"""

from __future__ import annotations

import inspect
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from xmrlib.checkpoint import (BEST_KEYS, CHECKPOINT_KEYS, best_state, check_config,
                               load_checkpoint, load_history, rng_state, run_config,
                               save_checkpoint, set_rng_state, write_history)
from xmrlib.distributed import LossModule, init_distributed
from xmrlib.evaluation import evaluate
from xmrlib.models import build_model
from xmrlib.data.loaders import prefetch
from xmrlib.utils import (atomic_torch_save, atomic_write_json, configure_determinism,
                          resolve_device, seed_everything, set_device)


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults are VSE++'s (Adam 2e-4, 30 epochs, x0.1 at 15, batch 128,
    clip 2); chapters take smaller values from :mod:`xmrlib.config` for the CPU profiles."""

    epochs: int = 30
    lr: float = 2e-4
    lr_update: int | None = 15  # multiply the lr by lr_gamma every lr_update epochs (None: never)
    lr_gamma: float = 0.1
    grad_clip: float = 2.0  # max gradient norm (0: no clipping)
    weight_decay: float = 0.0  # Adam's L2 penalty (A3VSE: 1e-6)
    batch_size: int = 128
    ckpt_every_steps: int = 0  # also checkpoint within an epoch every N steps (0: epoch ends only)
    seed: int = 0
    amp: str = "auto"  # "auto": bfloat16 autocast on CUDA; "bf16": also on CPU; "off"
    log_every: int = 50  # steps between progress-bar updates of the running loss
    eval_protocol: str = "1k"
    eval_every: int = 1  # dev evaluation every N epochs and after the last; the best is kept
    eval_batch_size: int = 128
    gather_negatives: bool = True  # DDP: all-gather embeddings so negatives are global

    def __post_init__(self) -> None:
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ValueError(f"TrainConfig.eval_every must be a positive integer (epochs between "
                             f"dev evaluations), got {self.eval_every!r}")

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
    set_device(dev)  # under torchrun: this rank's GPU for NCCL and bare "cuda" calls
    configure_determinism(dev)
    rank, world = init_distributed(dev)
    run_dir = Path(run_dir)
    if _open_run_dir(run_dir, run_config(model, cfg, data_id), resume, rank):
        return load_fit_result(run_dir, device=dev, model=model)  # finished before
    seed_everything(cfg.seed)
    state = _start(model, train_loader, cfg, run_dir, resume, dev, rank, world)
    for epoch in range(state.epoch, cfg.epochs):
        if not _train_epoch(state, epoch, progress, max_steps):
            _settle(state.history)
            return FitResult(model=model, history=state.history, run_dir=run_dir,
                             best_epoch=state.best_epoch)  # stopped by max_steps
        _end_epoch(state, epoch, dev_data)
    if rank == 0:
        atomic_write_json(run_dir / "done.json", {
            "epochs": cfg.epochs, "best_epoch": state.best_epoch, "best_rsum": state.best_rsum,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if world > 1:
        dist.barrier()
    return load_fit_result(run_dir, device=dev, model=model)


@dataclass
class _TrainState:
    """What a run carries from step to step; :func:`_checkpoint` saves it, :func:`_start`
    restores it."""

    model: nn.Module
    wrapped: nn.Module  # the model's loss as a module (inside DDP under torchrun)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: Any
    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    rank: int
    world: int
    gather: bool  # all-gather negatives across ranks
    history: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"steps": [], "epochs": []})
    epoch: int = 0  # the epoch to continue
    skip: int = 0  # batches of that epoch already trained
    best_rsum: float = -float("inf")
    best_epoch: int = -1
    epoch_rng: dict[str, Any] | None = None  # RNG at the start of the current epoch
    resume_rng: dict[str, Any] | None = None  # RNG of the checkpoint resumed from
    steps_per_epoch: int = 0
    steps_done: int = 0  # optimiser steps of this call

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint_last.pt"


def _open_run_dir(run_dir: Path, config: dict[str, Any], resume: bool, rank: int) -> bool:
    """Start the run folder over (``resume=False``) or check that it holds this run; write
    ``config.json``. True when the run finished before (nothing to train)."""
    if not resume and rank == 0 and run_dir.exists():
        for name in ("checkpoint_last.pt", "model_best.pt", "done.json", "config.json"):
            (run_dir / name).unlink(missing_ok=True)
    if resume:
        check_config(run_dir, config)
        if (run_dir / "done.json").exists():
            return True
    if rank == 0:
        atomic_write_json(run_dir / "config.json", config)
    return False


def _start(model: nn.Module, loader: Any, cfg: TrainConfig, run_dir: Path, resume: bool,
           dev: torch.device, rank: int, world: int) -> _TrainState:
    """Model on the device (DDP-wrapped under torchrun), optimiser and schedule, restored from
    ``checkpoint_last.pt`` when resuming."""
    model.to(dev)
    wrapped: nn.Module = LossModule(model)
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[dev.index or 0] if dev.type == "cuda" else None)
    gather = world > 1 and cfg.gather_negatives
    if gather and "gather" not in inspect.signature(model.loss).parameters:
        raise ValueError(f"model {model.name!r} cannot gather negatives across ranks "
                         "(its loss has no 'gather' argument): set gather_negatives=False")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.lr_update or 10**9, gamma=cfg.lr_gamma)
    state = _TrainState(model, wrapped, optimizer, scheduler, loader, cfg, run_dir, dev, rank,
                        world, gather)
    if resume and state.ckpt_path.exists():
        # read on the host: the RNG states must stay CPU byte tensors, and load_state_dict
        # copies weights and optimiser moments to wherever the parameters are
        ckpt = load_checkpoint(state.ckpt_path, torch.device("cpu"), CHECKPOINT_KEYS)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state.history, state.best_rsum, state.best_epoch = (ckpt["history"], ckpt["best_rsum"],
                                                            ckpt["best_epoch"])
        state.epoch, state.skip, state.epoch_rng = (ckpt["epoch"], ckpt["step_in_epoch"],
                                                    ckpt["epoch_rng"])
        state.resume_rng = ckpt["rng"]
        if not state.skip:
            set_rng_state(state.resume_rng, loader)
    state.steps_per_epoch = len(loader)
    return state


def _epoch_batches(state: _TrainState, epoch: int) -> Any:
    """The epoch's batch iterator, past the batches an interrupted run already trained on."""
    loader = state.loader
    _set_epoch(loader, epoch)
    if state.skip and state.epoch_rng is not None:
        set_rng_state(state.epoch_rng, loader)  # the order of the interrupted epoch
    state.epoch_rng = rng_state(loader)
    batches = iter(loader)
    for _ in range(state.skip):
        next(batches)
    if state.skip:
        # the global generators as saved; the loader's own generator goes on from the replayed
        # epoch (its saved state may hold draws that a prefetching thread made ahead of the save)
        set_rng_state(state.resume_rng, None)
    return batches


def _train_epoch(state: _TrainState, epoch: int, progress: bool, max_steps: int | None) -> bool:
    """Train one epoch (checkpointing every ``ckpt_every_steps``); False when ``max_steps``
    stopped it."""
    cfg, n = state.cfg, state.steps_per_epoch
    batches = _epoch_batches(state, epoch)
    if state.device.type == "cuda":  # the next batches are built in pinned memory meanwhile
        batches = prefetch(batches, pin_memory=True, device=state.device)
    state.wrapped.train()
    bar = _progress_bar(progress and state.rank == 0, n, state.skip, f"epoch {epoch + 1}")
    try:
        for step_in_epoch, batch in enumerate(batches, start=state.skip):
            loss = _step(state, batch, epoch, epoch * n + step_in_epoch)
            if bar is not None:
                bar.update(1)
                if (step_in_epoch + 1) % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            done_in_epoch = step_in_epoch + 1
            if (cfg.ckpt_every_steps and done_in_epoch % cfg.ckpt_every_steps == 0
                    and done_in_epoch < n and state.rank == 0):
                _checkpoint(state, epoch, done_in_epoch, state.epoch_rng)
            if max_steps is not None and state.steps_done >= max_steps:
                return False
    finally:
        if bar is not None:
            bar.close()
        if hasattr(batches, "close"):
            batches.close()  # stops a prefetching thread
    state.skip = 0
    return True


def _step(state: _TrainState, batch: dict[str, Any], epoch: int, global_step: int) -> Tensor:
    """One optimiser step on ``batch``, logged in the history; returns the loss."""
    cfg, dev = state.cfg, state.device
    batch = _to_device(batch, dev)
    total_steps = max(1, cfg.epochs * state.steps_per_epoch)
    with _autocast(cfg, dev):
        loss, info = state.wrapped(batch, global_step / total_steps, state.gather)
    state.optimizer.zero_grad(set_to_none=True)
    (loss * state.world).backward()  # DDP averages over ranks; our losses are sums
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.optimizer.step()
    # the loss stays on the device (reading it would wait for the GPU at every step); the
    # history's losses become floats together when it is saved (_settle)
    state.history["steps"].append({"step": global_step + 1, "epoch": epoch + 1,
                                   "loss": loss.detach(),
                                   "lr": state.optimizer.param_groups[0]["lr"], **info})
    state.steps_done += 1
    return loss


def _end_epoch(state: _TrainState, epoch: int, dev_data: Any) -> None:
    """Step the schedule, evaluate on dev (every ``eval_every`` epochs and after the last), keep
    the best evaluated model, checkpoint, write the history."""
    state.history["epochs"].append({"epoch": epoch + 1,
                                    "step": (epoch + 1) * state.steps_per_epoch,
                                    "lr": state.optimizer.param_groups[0]["lr"]})
    state.scheduler.step()
    due = (epoch + 1) % state.cfg.eval_every == 0 or epoch + 1 == state.cfg.epochs
    metrics = (_evaluate(state.model, dev_data, state.cfg, state.device)
               if state.rank == 0 and due else {})
    state.history["epochs"][-1].update(metrics)
    _settle(state.history)
    if state.rank == 0:
        rsum = metrics.get("rsum", float(epoch))  # no dev data: keep the last epoch
        if due and rsum > state.best_rsum:
            state.best_rsum, state.best_epoch = rsum, epoch + 1
            atomic_torch_save(best_state(state.model, state.best_epoch, metrics),
                              state.run_dir / "model_best.pt")
        _checkpoint(state, epoch + 1, 0, None)
        write_history(state.run_dir, state.history)


def _checkpoint(state: _TrainState, epoch: int, step_in_epoch: int,
                epoch_rng: dict[str, Any] | None) -> None:
    """``checkpoint_last.pt``: continue at ``epoch``/``step_in_epoch``."""
    _settle(state.history)
    save_checkpoint(state.ckpt_path, state.model, state.optimizer, state.scheduler, state.loader,
                    state.history, epoch, step_in_epoch, epoch_rng, state.best_rsum,
                    state.best_epoch)


# --------------------------------------------------------------------------- helpers

def _settle(history: dict[str, list[dict[str, Any]]]) -> None:
    """The step losses still held as device tensors, read as floats in one transfer (one host
    synchronisation per checkpoint or epoch rather than one per step)."""
    pending = [row for row in history["steps"] if torch.is_tensor(row["loss"])]
    if pending:
        values = torch.stack([row["loss"].double() for row in pending]).tolist()  # exact
        for row, value in zip(pending, values):
            row["loss"] = value


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


def _set_epoch(loader: Any, epoch: int) -> None:
    """Tell samplers that reshuffle per epoch (DistributedSampler style) which epoch it is."""
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)



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



def load_fit_result(run_dir: str | Path, device: str | torch.device = "auto",
                    model: nn.Module | None = None) -> FitResult:
    """A finished run as a ``FitResult`` (into ``model`` when given, else rebuilt)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    # read on the host: load_state_dict copies into the model wherever it is
    state = load_checkpoint(run_dir / "model_best.pt", torch.device("cpu"), BEST_KEYS)
    if model is None:
        model = build_model(state["name"], **state["config"])
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    return FitResult(model=model, history=load_history(run_dir), run_dir=run_dir,
                     best_epoch=state["epoch"], best_metrics=state["metrics"])



# --------------------------------------------------------------------------- moved names

#: names that moved to :mod:`xmrlib.runs` and still import from here (chapters use them)
_MOVED_TO_RUNS = ("data_identity", "run_data_identity", "run_dir_for", "fit_or_load", "main",
                  "chapter_train_config", "chapter_model_config", "fit_chapter_model")


def __getattr__(name: str) -> Any:
    """``xmrlib.train.fit_or_load`` and the other names of :data:`_MOVED_TO_RUNS`, imported
    lazily (:mod:`xmrlib.runs` imports this module)."""
    if name in _MOVED_TO_RUNS:
        from xmrlib import runs

        return getattr(runs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from xmrlib.runs import main

    raise SystemExit(main())

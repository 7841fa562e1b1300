"""Distributed training helpers: torchrun's process group and negatives gathered across ranks.

Under ``torchrun --nproc_per_node N`` (``RANK``/``WORLD_SIZE`` set), :func:`xmrlib.train.fit`
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

import atexit
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn


def dist_env() -> tuple[int, int]:
    """(rank, world_size) of this process: from the process group, else torchrun's env vars."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join torchrun's process group when ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA); the
    group lives as long as the process (a notebook trains several runs in it) and is destroyed
    when the process exits, as NCCL asks (otherwise it warns of leaked resources or hangs)."""
    rank, world = dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)
    return rank, world


def _destroy_process_group() -> None:
    """Leave the process group if it is still there (at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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



class LossModule(nn.Module):
    """Routes ``model.loss`` through ``forward`` so that DDP's hooks see the call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor], progress: float,
                gather: bool) -> tuple[Tensor, dict[str, float]]:
        if gather:
            return self.model.loss(batch, progress, gather=all_gather_with_grad)
        return self.model.loss(batch, progress)


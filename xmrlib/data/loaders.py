"""Batches over captions (one caption with its image, as in vsepp's ``PrecompDataset``).

Captions are tokenised once; a batch gathers its images from the (possibly memory-mapped)
feature array. The order is a function of ``(seed, epoch)`` only. With ``world_size > 1`` every
rank walks the same global permutation and takes the ``rank``-th slice of each global batch of
``batch_size * world_size`` captions, so a DDP step sees exactly the single-process global batch.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from xmrlib.data.precomp import PrecompData

Tokenizer = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]


class CaptionDataset:
    """Item ``j`` = caption ``j`` (pre-tokenised) with its image ``j // captions_per_image``,
    whose features are row ``j`` of ``data.caption_images`` when the data set stores one row per
    caption (vsepp's 10-crop files, ``im_div = 1``), else row ``j // captions_per_image``."""

    def __init__(self, data: PrecompData, tokenizer: Tokenizer) -> None:
        self.data = data
        self.tokens, self.lengths = tokenizer(data.captions)   # (n_caps, L), (n_caps,)

    def __len__(self) -> int:
        return len(self.data.captions)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch dict (CONTRIBUTING.md) of caption indices ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        img = idx // self.data.captions_per_image
        lengths = self.lengths[idx]
        n_reg = self.data.n_regions if self.data.n_regions is not None else None
        rows = self.data.images[img] if self.data.caption_images is None else \
            self.data.caption_images[idx]
        images = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        if images.ndim == 2:
            images = images[:, None, :]                           # (B, D) -> (B, 1, D)
        return {"images": images,
                "n_regions": (torch.from_numpy(n_reg[img].astype(np.int64)) if n_reg is not None
                              else torch.full((len(idx),), images.shape[1], dtype=torch.long)),
                "tokens": self.tokens[idx, : int(lengths.max())] if len(idx) else self.tokens[idx],
                "lengths": lengths,
                "image_idx": torch.from_numpy(img), "caption_idx": torch.from_numpy(idx)}


class CaptionLoader:
    """Iterable of caption batches; call :meth:`set_epoch` to reshuffle deterministically."""

    def __init__(self, dataset: CaptionDataset, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world_size: int = 1
                 ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.drop_last, self.rank, self.world_size = seed, drop_last, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` from now on."""
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(n, generator=g).numpy()

    def global_batches(self) -> list[np.ndarray]:
        """The caption indices of every global batch of this epoch."""
        order, gb = self._order(), self.batch_size * self.world_size
        batches = [order[i: i + gb] for i in range(0, len(order), gb)]
        if self.drop_last or self.world_size > 1:  # ranks must take equal steps
            batches = [b for b in batches if len(b) == gb]
        return batches

    def __len__(self) -> int:
        return len(self.global_batches())

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for b in self.global_batches():
            yield self.dataset.batch(b[self.rank * self.batch_size: (self.rank + 1) * self.batch_size])


def make_loader(data: PrecompData, tokenizer: Tokenizer, batch_size: int, shuffle: bool = True,
                seed: int = 0, drop_last: bool = False, num_workers: int = 0, rank: int = 0,
                world_size: int = 1) -> CaptionLoader:
    """Caption batches of ``data`` (dicts of CONTRIBUTING.md). With ``world_size > 1`` the last
    incomplete global batch is dropped so that every rank takes the same number of steps.
    ``num_workers`` is accepted for interface compatibility; batches are built in-process."""
    del num_workers
    return CaptionLoader(CaptionDataset(data, tokenizer), batch_size, shuffle, seed, drop_last,
                         rank, world_size)


def image_batches(data: PrecompData, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Ordered ``(images (b, R, D), n_regions (b,))`` chunks of a split for encoding."""
    n = data.images.shape[0]
    for i in range(0, n, batch_size):
        ims = torch.from_numpy(np.array(data.images[i: i + batch_size], dtype=np.float32))
        if ims.ndim == 2:
            ims = ims[:, None, :]
        nr = (torch.from_numpy(np.asarray(data.n_regions[i: i + batch_size], np.int64))
              if data.n_regions is not None else torch.full((len(ims),), ims.shape[1]))
        yield ims, nr


def caption_batches(data: PrecompData, tokenizer: Tokenizer, batch_size: int
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Ordered ``(tokens (b, L), lengths (b,))`` chunks of a split's captions."""
    for i in range(0, len(data.captions), batch_size):
        yield tokenizer(data.captions[i: i + batch_size])


"""Batches over captions (one caption with its image, as in vsepp's ``PrecompDataset``).

Captions are tokenised once; a batch gathers its images from the (possibly memory-mapped)
feature array. The order is a function of ``(seed, epoch)`` only. With ``world_size > 1`` every
rank walks the same global permutation and takes the ``rank``-th slice of each global batch of
``batch_size * world_size`` captions, so a DDP step sees exactly the single-process global batch.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

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


def _pinned(batch: Any) -> Any:
    """``batch`` with every host tensor in page-locked memory (``Tensor.pin_memory``); tensors
    already on a device stay as they are."""
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    if torch.is_tensor(batch) and batch.device.type == "cpu":
        return batch.pin_memory()
    return batch


_DONE = object()


def prefetch(batches: Iterable[Any], depth: int = 2, pin_memory: bool = False,
             device: torch.device | None = None) -> Iterator[Any]:
    """Yield the items of ``batches`` in the same order, built ``depth`` ahead by a thread.

    The thread builds the next batches (gathering image features, often from a memory-mapped
    file, in numpy code that releases the interpreter lock) while the device works on the
    current one. With ``pin_memory`` it also copies every tensor of a batch into page-locked
    memory, so that ``tensor.to("cuda", non_blocking=True)`` is an asynchronous copy and the
    host does not wait for it; use it only when CUDA is there. The contents and the order of
    the batches are those of ``batches``: the loaders draw their order from their own seeded
    generators, never from global random state, so a thread changes nothing. An exception in
    the thread is raised here; closing this generator early stops the thread. ``device``: the
    GPU of this process (under torchrun, ``cuda:LOCAL_RANK``); the thread makes it its current
    device, as a new thread starts on GPU 0 and pinning would otherwise open a context there.
    """
    if depth < 1:
        raise ValueError(f"prefetch: depth must be >= 1, got {depth}")
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            if device is not None:
                from xmrlib.utils import set_device

                set_device(device)
            for batch in batches:
                if not put(_pinned(batch) if pin_memory else batch):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    thread = threading.Thread(target=work, name="xmrlib-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


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


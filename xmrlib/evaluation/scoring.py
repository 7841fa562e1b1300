"""Scoring a model on a split under a protocol: embeddings -> similarity matrix -> metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmrlib.evaluation.binding import binding_accuracy
from xmrlib.evaluation.protocols import protocol_folds
from xmrlib.evaluation.recall import average_folds, recall_metrics
from xmrlib.utils import resolve_device


def _progress(iterable: Any, total: int, desc: str, progress: bool) -> Any:
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def _pad_cat(parts: list[Tensor]) -> Tensor:
    """Concatenate along dim 0, zero-padding dim 1 of 3-D parts to the longest (captions of
    cross-attention models come as (n, L, d) with L = the batch's longest caption)."""
    if parts[0].dim() != 3:
        return torch.cat(parts)
    longest = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, longest - p.shape[1])) for p in parts])


@torch.no_grad()
def encode_dataset(model: torch.nn.Module, data: Any, batch_size: int = 256,
                   device: str | torch.device = "auto", progress: bool = True
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Embed every image and caption of a split, in order, on CPU.

    Uses the model contract: ``model.encode_images(images, n_regions)``, ``model.tokenize``,
    ``model.encode_captions(tokens, lengths)``; eval mode (restored afterwards), no gradients.
    The model is moved to ``device``.

    Args:
        data: a ``PrecompData`` (``images`` (N, R, D) or (N, D), ``n_regions``, ``captions``).

    Returns:
        ``(img_emb, cap_emb, cap_lens)``: ``(N, d)`` / ``(5N, d)`` for dual encoders, ``(N, R', d)``
        / ``(5N, L', d)`` for cross-attention models (captions zero-padded to the longest);
        ``cap_lens`` (5N,) the token lengths from ``model.tokenize``.
    """
    dev = resolve_device(device)
    was_training = model.training
    model.to(dev).eval()
    n_img, n_cap = len(data.images), len(data.captions)
    n_regions = getattr(data, "n_regions", None)
    imgs, caps, lens = [], [], []
    try:
        for s in _progress(range(0, n_img, batch_size), -(-n_img // batch_size), "images",
                           progress):
            batch = np.array(data.images[s:s + batch_size], dtype=np.float32)  # copy of a memmap
            x = torch.from_numpy(batch)
            nr = None if n_regions is None else torch.as_tensor(n_regions[s:s + batch_size]).to(dev)
            imgs.append(model.encode_images(x.to(dev), nr).float().cpu())
        for s in _progress(range(0, n_cap, batch_size), -(-n_cap // batch_size), "captions",
                           progress):
            tokens, lengths = model.tokenize(list(data.captions[s:s + batch_size]))
            caps.append(model.encode_captions(tokens.to(dev), lengths.to(dev)).float().cpu())
            lens.append(torch.as_tensor(lengths).long().cpu())
    finally:
        model.train(was_training)
    return _pad_cat(imgs), _pad_cat(caps), torch.cat(lens)


@torch.no_grad()
def similarity_matrix(model: torch.nn.Module, img_emb: Tensor, cap_emb: Tensor,
                      cap_lens: Tensor | None = None, img_lens: Tensor | None = None,
                      chunk: int = 1000, device: str | torch.device = "auto") -> np.ndarray:
    """``model.similarity`` over all pairs -> float32 numpy ``(n_img, n_cap)``.

    Captions go through in chunks of ``chunk`` so that cross-attention models (whose
    ``similarity`` builds per-pair tensors) fit in memory; the images stay whole. Exact: the
    chunks are columns of the same matrix.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    img = img_emb.to(dev)
    il = None if img_lens is None else torch.as_tensor(img_lens).to(dev)
    out = np.empty((img_emb.shape[0], cap_emb.shape[0]), dtype=np.float32)
    try:
        for s in range(0, cap_emb.shape[0], chunk):
            cl = None if cap_lens is None else cap_lens[s:s + chunk].to(dev)
            block = model.similarity(img, cap_emb[s:s + chunk].to(dev), cap_lens=cl, img_lens=il)
            out[:, s:s + chunk] = block.float().cpu().numpy()               # (n_img, chunk)
    finally:
        model.train(was_training)
    return out


def sims_metrics(sims: np.ndarray | list[np.ndarray], data: Any, protocol: str = "1k"
                 ) -> dict[str, float]:
    """The metrics :func:`evaluate` returns, from score matrices already computed.

    ``sims`` is what ``evaluate(..., return_sims=True)`` gives for ``data`` under ``protocol``:
    one ``(N, cpi*N)`` array, or for ``"5fold1k"`` the list of the five fold matrices. Scores
    combined outside a model (SCAN's ensemble averages two models' matrices) are scored here
    without encoding the split again.
    """
    cpi = int(getattr(data, "captions_per_image", 5))
    folds = protocol_folds(len(data.images), protocol)
    fold_sims = sims if isinstance(sims, list) else [sims]
    if len(fold_sims) != len(folds):
        raise ValueError(f"sims_metrics: {len(fold_sims)} score matrices for the {len(folds)} "
                         f"fold(s) of protocol {protocol!r}")
    groups = getattr(data, "groups", None)
    fold_metrics = []
    for (a, b), s in zip(folds, fold_sims):
        if s.shape != (b - a, cpi * (b - a)):
            raise ValueError(f"sims_metrics: a fold of {b - a} images needs a "
                             f"({b - a}, {cpi * (b - a)}) score matrix, got {s.shape}")
        m = recall_metrics(s, cpi)
        if groups is not None:
            m["binding_acc"] = binding_accuracy(s, np.asarray(groups)[a:b], cpi)
        fold_metrics.append(m)
    return fold_metrics[0] if len(folds) == 1 else average_folds(fold_metrics)


def evaluate(model: torch.nn.Module, data: Any, protocol: str = "1k", batch_size: int = 256,
             device: str | torch.device = "auto", return_sims: bool = False,
             chunk: int = 1000, progress: bool = False
             ) -> dict[str, float] | tuple[dict[str, float], np.ndarray | list[np.ndarray]]:
    """Encode a split, score it under a protocol and return the metrics.

    Returns the flat metrics dict of :func:`recall_metrics` (averaged over folds for
    ``"5fold1k"``, see :func:`average_folds`), plus ``binding_acc`` when ``data.groups`` is not
    None (computed inside each fold, so twins in another fold do not count, then averaged).
    With ``return_sims=True`` returns ``(metrics, sims)``: one ``(N, cpi*N)`` array, or for
    ``"5fold1k"`` the list of the five fold matrices.
    """
    cpi = int(getattr(data, "captions_per_image", 5))
    n_img = len(data.images)
    if len(data.captions) != cpi * n_img:
        raise ValueError(f"evaluate: {len(data.captions)} captions for {n_img} images, expected "
                         f"{cpi} per image")
    folds = protocol_folds(n_img, protocol)
    img_emb, cap_emb, cap_lens = encode_dataset(model, data, batch_size, device, progress)
    n_regions = getattr(data, "n_regions", None)
    img_lens = None if n_regions is None else torch.as_tensor(np.asarray(n_regions))
    fold_sims = [similarity_matrix(model, img_emb[a:b], cap_emb[cpi * a:cpi * b],
                                   cap_lens[cpi * a:cpi * b],
                                   None if img_lens is None else img_lens[a:b], chunk, device)
                 for a, b in folds]
    sims = fold_sims[0] if len(folds) == 1 else fold_sims
    metrics = sims_metrics(sims, data, protocol)
    return (metrics, sims) if return_sims else metrics

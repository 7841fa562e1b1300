"""One evaluator for every model: ranks, Recall@K, median/mean rank, protocols, binding accuracy.

The task (Kiros et al. 2014; Karpathy & Fei-Fei 2015; Faghri et al. 2018): a test set of
``N`` images with ``5`` captions each gives a score matrix ``sims`` of shape ``(N, 5N)``,
``sims[i, j]`` = image ``i`` vs caption ``j``; captions ``5i .. 5i+4`` describe image ``i``.

* **Image to text (i2t, "annotation")**: each image ranks all ``5N`` captions; its rank is the
  best (lowest) rank among its five captions.
* **Text to image (t2i, "search")**: each caption ranks all ``N`` images; its rank is the rank
  of its image.

Ranks are 0-based. ``R@K`` is the percentage of queries with rank ``< K``; ``medr =
floor(median rank) + 1`` and ``meanr = mean rank + 1`` (1-based, the papers' convention, as in
``i2t``/``t2i`` of the official VSE++ code, ``fartashf/vsepp`` ``evaluation.py``);
``rsum`` is the sum of the six recalls.

**Ties.** The rank of a positive is the number of *negatives* that score at least as high
(``>=``), so every tie counts against the model: a collapsed model that gives every pair the
same score gets the worst rank, not a perfect one (counting only strictly higher scores would
give it R@1 = 100%). The reference code ranks with ``argsort``, where ties fall wherever the
sort puts them; with continuous scores ties have probability zero and all conventions agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmrlib.utils import resolve_device

__all__ = ["ranks", "recall_metrics", "protocol_folds", "encode_dataset", "similarity_matrix",
           "evaluate", "average_folds", "binding_accuracy", "binding_chance",
           "random_ranking_expectation", "oracle_recall",
           "simulate_random_ranking", "PROTOCOLS", "METRIC_KEYS"]

PROTOCOLS = ("1k", "5k", "5fold1k")
METRIC_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr",
               "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr", "rsum")
_RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
_ROW_CHUNK = 256  # rows of sims compared at once: bounds the temporary boolean array


def _as_numpy(sims: Any, captions_per_image: int) -> np.ndarray:
    """Validate a score matrix (numpy or torch) and return it as a numpy array."""
    if isinstance(sims, Tensor):
        sims = sims.detach().cpu().numpy()
    sims = np.asarray(sims)
    if sims.ndim != 2:
        raise ValueError(f"sims must be 2-D (n_images, n_captions), got shape {sims.shape}")
    n_img, n_cap = sims.shape
    if n_img == 0 or n_cap != captions_per_image * n_img:
        raise ValueError(f"sims of shape {sims.shape}: expected (N, {captions_per_image} * N) "
                         f"with N >= 1 (captions {captions_per_image}i..{captions_per_image}i+"
                         f"{captions_per_image - 1} belong to image i)")
    if np.isnan(sims).any():
        raise ValueError("sims contains NaN scores")
    return sims


def ranks(sims: Any, captions_per_image: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """0-based retrieval ranks of every query, vectorised by counting.

    Returns ``(i2t, t2i)``: ``i2t`` (N,) the best rank among each image's captions, ``t2i``
    (cpi * N,) the rank of each caption's image. A rank is the number of negatives scoring at
    least as high as the positive: its position in a descending sort with ties placed against
    it. For i2t the best of the image's captions is the one with the highest score, so the
    image's rank is the number of *other* images' captions scoring ``>=`` its best positive.
    No sort: O(N * 5N) comparisons, in row chunks.
    """
    sims = _as_numpy(sims, captions_per_image)
    n_img, n_cap = sims.shape
    img_of_cap = np.arange(n_cap) // captions_per_image
    pos_t2i = sims[img_of_cap, np.arange(n_cap)]                 # (5N,) each caption's positive
    own = pos_t2i.reshape(n_img, captions_per_image)             # (N, cpi) the image's positives
    best_pos = own.max(axis=1)                                        # (N,) best positive per image
    r_i2t = np.empty(n_img, dtype=np.int64)
    r_t2i = np.zeros(n_cap, dtype=np.int64)
    for s in range(0, n_img, _ROW_CHUNK):
        block = sims[s:s + _ROW_CHUNK]                                # (b, 5N)
        best = best_pos[s:s + len(block), None]                       # (b, 1)
        r_i2t[s:s + len(block)] = (block >= best).sum(axis=1)
        r_t2i += (block >= pos_t2i[None, :]).sum(axis=0)
    # the counts above include the positives themselves: remove them
    own_at_best = (own >= best_pos[:, None]).sum(axis=1)
    return r_i2t - own_at_best, r_t2i - 1


def _rank_summary(r: np.ndarray, prefix: str) -> dict[str, float]:
    """R@1/5/10 (percent), medr and meanr (1-based) of 0-based ranks."""
    out = {f"{prefix}_r{k}": 100.0 * float(np.mean(r < k)) for k in (1, 5, 10)}
    out[f"{prefix}_medr"] = float(np.floor(np.median(r)) + 1)
    out[f"{prefix}_meanr"] = float(np.mean(r) + 1)
    return out


def recall_metrics(sims: Any, captions_per_image: int = 5) -> dict[str, float]:
    """Recall@1/5/10, median and mean rank in both directions, and ``rsum``.

    Args:
        sims: ``(N, cpi * N)`` numpy array or torch tensor; ``sims[i, j]`` scores image ``i``
            against caption ``j``, and captions ``cpi*i .. cpi*i + cpi - 1`` describe image ``i``.
        captions_per_image: ``cpi`` (5 for Flickr30K and COCO).

    Returns:
        ``{i2t_r1, i2t_r5, i2t_r10, i2t_medr, i2t_meanr, t2i_r1, ..., t2i_meanr, rsum}``, recalls
        in percent, ``rsum`` = the sum of the six recalls (maximum 600). See :func:`ranks`.
    """
    r_i2t, r_t2i = ranks(sims, captions_per_image)
    out = {**_rank_summary(r_i2t, "i2t"), **_rank_summary(r_t2i, "t2i")}
    out["rsum"] = sum(out[k] for k in _RECALL_KEYS)
    return out


def average_folds(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every key over folds, with ``rsum`` = the sum of the averaged recalls.

    Because ``rsum`` is linear in the recalls this equals the mean of the folds' ``rsum``.
    The official VSE++ ``evalrank(fold5=True)`` (``fartashf/vsepp``, ``evaluation.py``; SCAN's
    copy does the same) stores per fold ``[r1, r5, r10, medr, meanr]`` for i2t and for t2i,
    then ``ar`` (mean i2t recall), ``ari`` (mean t2i recall) and ``rsum``, and after averaging
    prints ``mean[10] * 6`` as "rsum": index 10 is ``ar``, so the printed value is twice the
    i2t recall sum and ignores t2i entirely. The next two lines are shifted as well: "Average
    i2t Recall" shows ``ari`` (the t2i mean) and "Average t2i Recall" shows the true rsum.
    """
    if not fold_metrics:
        raise ValueError("average_folds: no folds")
    keys = fold_metrics[0].keys()
    out = {k: float(np.mean([m[k] for m in fold_metrics])) for k in keys}
    out["rsum"] = sum(out[k] for k in _RECALL_KEYS)
    return out


def protocol_folds(n_images: int, protocol: str) -> list[tuple[int, int]]:
    """Image ranges ``[(start, stop), ...]`` of an evaluation protocol.

    * ``"1k"``: one gallery of all test images (Flickr30K's test split has 1000 images).
    * ``"5k"``: one gallery of all test images (COCO 5K: the 5000 images of ``testall``).
    * ``"5fold1k"``: COCO 1K, five consecutive folds of 1000 images of the 5000, each
      evaluated on its own, the metrics averaged over folds (Karpathy & Fei-Fei 2015; VSE++;
      SCAN). On smaller test sets (Shapes) the test set is cut into 5 equal consecutive folds,
      so ``n_images`` must be divisible by 5.

    Captions follow their images: fold ``(a, b)`` holds captions ``cpi*a .. cpi*b - 1``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {PROTOCOLS}")
    if n_images < 1:
        raise ValueError(f"protocol {protocol!r} needs at least one image, got {n_images}")
    if protocol != "5fold1k":
        return [(0, n_images)]
    if n_images % 5:
        raise ValueError(f"protocol '5fold1k' cuts the test set into 5 equal folds: "
                         f"{n_images} images is not divisible by 5")
    size = n_images // 5
    return [(k * size, (k + 1) * size) for k in range(5)]


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
    groups = getattr(data, "groups", None)
    fold_metrics, fold_sims = [], []
    for a, b in folds:
        sims = similarity_matrix(model, img_emb[a:b], cap_emb[cpi * a:cpi * b],
                                 cap_lens[cpi * a:cpi * b],
                                 None if img_lens is None else img_lens[a:b], chunk, device)
        m = recall_metrics(sims, cpi)
        if groups is not None:
            m["binding_acc"] = binding_accuracy(sims, np.asarray(groups)[a:b], cpi)
        fold_metrics.append(m)
        fold_sims.append(sims)
    metrics = fold_metrics[0] if len(folds) == 1 else average_folds(fold_metrics)
    if return_sims:
        return metrics, (fold_sims[0] if len(folds) == 1 else fold_sims)
    return metrics


def binding_accuracy(sims: Any, groups: Any, captions_per_image: int = 5) -> float:
    """Fraction of captions that score their own image strictly above its swapped twins.

    Shapes scenes come in groups that share objects and colours but swap their bindings
    ("red circle, blue square" vs "blue circle, red square"). For caption ``j`` of image
    ``i``, the candidates are the images with ``groups[m] == groups[i]``; the caption is
    correct when ``sims[i, j] > sims[m, j]`` for every twin ``m != i`` (a tie is wrong). A
    caption whose image has no twin is trivially correct, matching :func:`binding_chance`.
    """
    sims = _as_numpy(sims, captions_per_image)
    groups = np.asarray(groups)
    n_img, n_cap = sims.shape
    if groups.shape != (n_img,):
        raise ValueError(f"groups must have shape ({n_img},) (one id per image), got "
                         f"{groups.shape}")
    img_of_cap = np.arange(n_cap) // captions_per_image
    correct = np.empty(n_cap, dtype=bool)
    for s in range(0, n_cap, _ROW_CHUNK * 4):
        cols = np.arange(s, min(s + _ROW_CHUNK * 4, n_cap))
        own = img_of_cap[cols]
        twin = (groups[:, None] == groups[own][None, :]) & (np.arange(n_img)[:, None] != own)
        block = sims[:, cols]                                           # (N, c)
        twin_best = np.where(twin, block, -np.inf).max(axis=0)          # (c,) best twin score
        correct[cols] = block[own, np.arange(len(cols))] > twin_best
    return float(correct.mean())


def binding_chance(groups: Any, captions_per_image: int = 5) -> float:
    """Binding accuracy of random scores: the mean over captions of 1 / (size of its group).

    Every caption has the same number of captions per image, so this is the mean over images.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty 1-D array, got shape {groups.shape}")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return float(np.mean(1.0 / counts[inverse]))


def _median_rank(pmf: np.ndarray) -> float:
    """``floor(median) + 1`` of a distribution over 0-based ranks: the smallest rank whose
    cumulative probability reaches 1/2 (the sample median of many queries tends to it)."""
    cdf = np.cumsum(pmf)
    return float(np.searchsorted(cdf, 0.5 - 1e-12) + 1)


def random_ranking_expectation(n_images: int, captions_per_image: int = 5) -> dict[str, float]:
    """Exact expected metrics when the scores are uniformly random (no model at all).

    * t2i: a caption's image is equally likely at every rank ``0 .. N-1``, so
      ``R@K = K / N``, ``medr = ceil(N / 2)`` and ``meanr = (N + 1) / 2``.
    * i2t: the image's ``c`` captions are a random ``c``-subset of the ``M = cN`` positions; its
      rank is the number of negatives before the first of them. The top ``K`` holds none of
      them with the hypergeometric probability ``P(rank >= K) = C(M - c, K) / C(M, K)``, so
      ``R@K = 1 - C(M - c, K) / C(M, K)``; the median comes from this exact distribution and
      ``E[rank] = (M - c) / (c + 1)`` (the negatives split evenly into ``c + 1`` gaps).

    Recalls in percent, ``medr``/``meanr`` in the papers' 1-based convention, plus ``rsum``.
    Kiros et al. (2014, Table 2) report a "Random Ranking" row for 1000 Flickr images.
    """
    n, c = int(n_images), int(captions_per_image)
    if n < 1 or c < 1:
        raise ValueError(f"need n_images >= 1 and captions_per_image >= 1, got {n}, {c}")
    m = n * c
    k = np.arange(m - c + 1)                                            # possible i2t ranks
    # survival[k] = P(rank >= k) = prod_{t<k} (M - c - t) / (M - t), the hypergeometric term
    survival = np.concatenate([[1.0], np.cumprod((m - c - k[:-1]) / (m - k[:-1]))])
    pmf_i2t = survival - np.append(survival[1:], 0.0)
    out: dict[str, float] = {}
    for K in (1, 5, 10):
        out[f"i2t_r{K}"] = float(100.0 * (1.0 - (survival[K] if K < len(survival) else 0.0)))
    out["i2t_medr"] = _median_rank(pmf_i2t)
    out["i2t_meanr"] = (m - c) / (c + 1) + 1.0
    for K in (1, 5, 10):
        out[f"t2i_r{K}"] = 100.0 * min(K, n) / n
    out["t2i_medr"] = float(math.ceil(n / 2))
    out["t2i_meanr"] = (n + 1) / 2
    out["rsum"] = float(sum(out[key] for key in _RECALL_KEYS))
    return out


def simulate_random_ranking(n_images: int, captions_per_image: int = 5, n_trials: int = 10,
                            seed: int = 0) -> dict[str, float]:
    """Mean of :func:`recall_metrics` over ``n_trials`` matrices of i.i.d. Gaussian scores
    (a Monte Carlo check of :func:`random_ranking_expectation`)."""
    rng = np.random.default_rng(seed)
    runs = [recall_metrics(rng.standard_normal((n_images, captions_per_image * n_images),
                                               dtype=np.float32), captions_per_image)
            for _ in range(n_trials)]
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}


def oracle_recall(truth: Any, captions_per_image: int = 5) -> dict[str, float]:
    """Exact expected recalls of an oracle that knows only which captions are *true* of which
    images: every true pair scores above every false one, true pairs tie among themselves and
    the ties are broken at random (the best any model can do when captions are ambiguous).

    ``truth`` is a boolean ``(N, cN)`` matrix whose own pairs must be true. A caption true of
    ``m`` images finds its image at a uniform rank ``0 .. m-1``: ``R@K = min(1, K / m)``. An
    image with ``m`` true captions, ``c`` of them its own, is in the hypergeometric case of
    :func:`random_ranking_expectation` with ``M = m``: ``R@K = 1 - C(m - c, K) / C(m, K)`` and
    ``E[rank] = (m - c) / (c + 1)``. Returns recalls (percent), ``i2t_meanr``, ``t2i_meanr``
    (1-based) and ``rsum``; no median, which is not an expectation over tie-breaks.
    """
    t = np.asarray(truth, dtype=bool)
    c = int(captions_per_image)
    n = t.shape[0]
    if t.ndim != 2 or t.shape[1] != c * n:
        raise ValueError(f"truth must have shape (N, {c}N), got {t.shape}")
    own = t[np.arange(c * n) // c, np.arange(c * n)]                    # (cN,)
    if not own.all():
        raise ValueError(f"{int((~own).sum())} captions are not true of their own image")
    m_cap = t.sum(axis=0).astype(np.float64)                             # (cN,) images per caption
    m_img = t.sum(axis=1).astype(np.float64)                             # (N,) captions per image
    out: dict[str, float] = {}
    for K in (1, 5, 10):
        # P(none of the c own captions in the first K of m) = prod_{t<K} (m - c - t) / (m - t)
        left = m_img[:, None] - np.arange(K)[None, :]                      # (N, K)
        miss = np.divide(np.maximum(left - c, 0.0), left, out=np.zeros_like(left),
                         where=left > 0)
        out[f"i2t_r{K}"] = float(100.0 * np.mean(1.0 - miss.prod(axis=1)))
    out["i2t_meanr"] = float(np.mean((m_img - c) / (c + 1)) + 1.0)
    for K in (1, 5, 10):
        out[f"t2i_r{K}"] = float(100.0 * np.mean(np.minimum(1.0, K / m_cap)))
    out["t2i_meanr"] = float(np.mean((m_cap - 1.0) / 2.0) + 1.0)
    out["rsum"] = float(sum(out[key] for key in _RECALL_KEYS))
    return out


def binding_ceiling(captions: list[str], groups: Any, captions_per_image: int = 5) -> float:
    """The highest :func:`binding_accuracy` any scoring function can reach on these captions.

    A model gives equal caption texts equal scores. When images of one binding group share a
    caption text (e.g. a count caption, true of every twin), at most the captions of one of
    those images can score their own image strictly above the others, so for every
    (group, text) only the largest number of captions held by a single image can be correct.
    """
    groups = np.asarray(groups)
    if len(captions) != captions_per_image * len(groups):
        raise ValueError(f"expected {captions_per_image} captions per image for {len(groups)} "
                         f"images, got {len(captions)} captions")
    held: dict[tuple[int, str], dict[int, int]] = {}
    for j, text in enumerate(captions):
        img = j // captions_per_image
        per_image = held.setdefault((int(groups[img]), text), {})
        per_image[img] = per_image.get(img, 0) + 1
    return sum(max(c.values()) for c in held.values()) / len(captions)

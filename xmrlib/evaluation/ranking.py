"""Retrieval ranks: where the ground truth lands for every query of a score matrix.

The task (Kiros et al. 2014; Karpathy & Fei-Fei 2015; Faghri et al. 2018): a test set of
``N`` images with ``5`` captions each gives a score matrix ``sims`` of shape ``(N, 5N)``,
``sims[i, j]`` = image ``i`` vs caption ``j``; captions ``5i .. 5i+4`` describe image ``i``.

* **Image to text (i2t, "annotation")**: each image ranks all ``5N`` captions; its rank is the
  best (lowest) rank among its five captions.
* **Text to image (t2i, "search")**: each caption ranks all ``N`` images; its rank is the rank
  of its image.

Ranks are 0-based in :func:`ranks` (the metrics' convention) and 1-based in
:func:`retrieval_ranks` (the plots' convention).

**Ties.** The rank of a positive is the number of *negatives* that score at least as high
(``>=``), so every tie counts against the model: a collapsed model that gives every pair the
same score gets the worst rank, not a perfect one (counting only strictly higher scores would
give it R@1 = 100%). The reference code ranks with ``argsort``, where ties fall wherever the
sort puts them; with continuous scores ties have probability zero and all conventions agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

ROW_CHUNK = 256  # rows of sims compared at once: bounds the temporary boolean array


def score_matrix(sims: Any, captions_per_image: int) -> np.ndarray:
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
    sims = score_matrix(sims, captions_per_image)
    n_img, n_cap = sims.shape
    img_of_cap = np.arange(n_cap) // captions_per_image
    pos_t2i = sims[img_of_cap, np.arange(n_cap)]                 # (5N,) each caption's positive
    own = pos_t2i.reshape(n_img, captions_per_image)             # (N, cpi) the image's positives
    best_pos = own.max(axis=1)                                        # (N,) best positive per image
    r_i2t = np.empty(n_img, dtype=np.int64)
    r_t2i = np.zeros(n_cap, dtype=np.int64)
    for s in range(0, n_img, ROW_CHUNK):
        block = sims[s:s + ROW_CHUNK]                                # (b, 5N)
        best = best_pos[s:s + len(block), None]                       # (b, 1)
        r_i2t[s:s + len(block)] = (block >= best).sum(axis=1)
        r_t2i += (block >= pos_t2i[None, :]).sum(axis=0)
    # the counts above include the positives themselves: remove them
    own_at_best = (own >= best_pos[:, None]).sum(axis=1)
    return r_i2t - own_at_best, r_t2i - 1



def retrieval_ranks(sims: np.ndarray, captions_per_image: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks for plots: :func:`ranks` plus one (one rank convention)."""
    ranks_i2t, ranks_t2i = ranks(sims, captions_per_image)
    return np.asarray(ranks_i2t) + 1, np.asarray(ranks_t2i) + 1


def topk_for_caption(sims: np.ndarray, j: int, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` images scoring highest for caption ``j`` (best first)."""
    return np.argsort(-np.asarray(sims)[:, j], kind="stable")[:k]


def topk_for_image(sims: np.ndarray, i: int, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` captions scoring highest for image ``i`` (best first)."""
    return np.argsort(-np.asarray(sims)[i, :], kind="stable")[:k]

"""The truth oracle: the best expected recalls when captions are true of several images."""

from __future__ import annotations

from typing import Any

import numpy as np

from xmrlib.evaluation.recall import RECALL_KEYS


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
    out["rsum"] = float(sum(out[key] for key in RECALL_KEYS))
    return out

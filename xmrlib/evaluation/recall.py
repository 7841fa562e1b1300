"""Rank metrics of a score matrix: Recall@K, medr, meanr per direction, rsum.

``R@K`` is the percentage of queries with (0-based) rank ``< K``; ``medr =
floor(median rank) + 1`` and ``meanr = mean rank + 1`` (1-based, the papers' convention, as in
``i2t``/``t2i`` of the official VSE++ code, ``fartashf/vsepp`` ``evaluation.py``);
``rsum`` is the sum of the six recalls. Ranks and their tie convention: :mod:`.ranking`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xmrlib.evaluation.ranking import ranks

METRIC_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr",
               "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr", "rsum")
RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


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
    out["rsum"] = sum(out[k] for k in RECALL_KEYS)
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
    out["rsum"] = sum(out[k] for k in RECALL_KEYS)
    return out

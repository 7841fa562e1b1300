"""Confidence intervals by a paired bootstrap over the test images of two runs' ``rsum``."""

from __future__ import annotations

from typing import Any

import numpy as np

from xmrlib.evaluation.ranking import ranks


def rsum_per_image(sims: Any, captions_per_image: int = 5) -> np.ndarray:
    """Each image's share of ``rsum``: 100 x (its i2t hits at 1, 5, 10 plus the mean t2i hits
    at 1, 5, 10 of its captions), (n_img,). Its mean over the images is the ``rsum`` of
    ``xmrlib.evaluation.recall_metrics(sims)``, so resampling images resamples ``rsum``."""
    r_i2t, r_t2i = ranks(sims, captions_per_image)
    ks = np.array([1, 5, 10])
    i2t = (r_i2t[:, None] < ks).sum(axis=1)  # (N,)
    t2i = (r_t2i[:, None] < ks).sum(axis=1).reshape(-1, captions_per_image).mean(axis=1)
    return 100.0 * (i2t + t2i)  # (5N,) -> (N, cpi) -> (N,) for t2i


def paired_bootstrap(shares_a: np.ndarray, shares_b: np.ndarray, n_boot: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over the test images of ``rsum``: run ``a`` minus run ``b``, from each
    run's :func:`rsum_per_image` on the same test split. Both runs answer the same queries;
    resampling images (each with its captions, so that one image's queries stay together) gives
    the spread of the difference that is due to the test set, not to training. Returns the mean
    difference ``delta``, its 95% interval ``ci_low``/``ci_high`` and ``p_b_better``, the
    fraction of resamples in which ``b`` scores higher."""
    diff = np.asarray(shares_a) - np.asarray(shares_b)  # (n_images,)
    rng = np.random.default_rng(seed)
    boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean()
                     for _ in range(n_boot)])
    return {"delta": float(diff.mean()), "ci_low": float(np.percentile(boot, 2.5)),
            "ci_high": float(np.percentile(boot, 97.5)),
            "p_b_better": float((boot < 0).mean())}

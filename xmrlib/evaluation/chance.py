"""Chance level: the metrics of a random ranking, exact and simulated."""

from __future__ import annotations

import math

import numpy as np

from xmrlib.evaluation.recall import RECALL_KEYS, recall_metrics


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
    out["rsum"] = float(sum(out[key] for key in RECALL_KEYS))
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

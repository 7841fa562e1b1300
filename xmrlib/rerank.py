"""Two-stage retrieval: a fast first stage shortlists k candidates, a costly scorer re-ranks them.

The first stage is any dual encoder (VSE++ here): its embeddings go into a faiss inner-product
index (exact ``IndexFlatIP``; cosine when the embeddings are l2-normalised), and each query keeps
its top-k. The second stage (SCAN's or MMCA's full similarity) scores only those k pairs. A
candidate the first stage missed can never come back, so recall@K of the two-stage system is
bounded by the first stage's recall@k; the chapters measure how fast it approaches exhaustive
cross attention as k grows.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: scorer(query_index, candidate_indices) -> fine scores of those candidates, shape (k,)
PairScorer = Callable[[int, np.ndarray], np.ndarray]


def faiss_topk(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of every query in the gallery with faiss.

    Returns (scores (n_q, k), indices (n_q, k)), best first.
    """
    import faiss  # imported here: optional dependency, heavy import

    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"faiss_topk needs 2-D arrays of equal width, got queries "
                         f"{queries.shape} and gallery {gallery.shape}")
    k = min(k, gallery.shape[0])
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    scores, indices = index.search(queries, k)
    return scores, indices


def rerank_matrix(coarse: np.ndarray, candidates: np.ndarray, scorer: PairScorer) -> np.ndarray:
    """Score matrix of a two-stage system for queries along the rows of ``coarse``.

    ``coarse`` (n_q, n_g) are first-stage scores, ``candidates`` (n_q, k) the shortlisted gallery
    indices per query. Each query's candidates are re-scored with ``scorer`` and placed above every
    other gallery item (ordered among themselves by the fine score); the rest keep the coarse
    order below them. The result ranks exactly as the two-stage system does, so it can be fed
    to :func:`xmrlib.evaluation.recall_metrics`.
    """
    coarse = np.asarray(coarse, dtype=np.float64)
    out = coarse - coarse.max() - 1.0  # every non-candidate below every candidate
    for q in range(coarse.shape[0]):
        cand = candidates[q]
        fine = np.asarray(scorer(q, cand), dtype=np.float64)
        # shift the fine scores above the whole coarse range, keeping their order
        out[q, cand] = fine - fine.min() + 1.0
    return out


def shortlists(first_img: np.ndarray, first_cap: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """First-stage shortlists of both directions with faiss: the top-k captions of every image
    (n_img, k) and the top-k images of every caption (n_cap, k), best first."""
    _, cap_cand = faiss_topk(first_img, first_cap, k)  # (n_img, k) captions per image
    _, img_cand = faiss_topk(first_cap, first_img, k)  # (n_cap, k) images per caption
    return cap_cand, img_cand


def two_way_metrics(i2t: np.ndarray, t2i: np.ndarray, captions_per_image: int = 5
                    ) -> dict[str, float]:
    """Flat metrics with the i2t keys of ``i2t``, the t2i keys of ``t2i`` and their rsum."""
    from xmrlib.evaluation import recall_metrics

    out = {key: v for key, v in recall_metrics(i2t, captions_per_image).items()
           if key.startswith("i2t_")}
    out.update({key: v for key, v in recall_metrics(t2i, captions_per_image).items()
                if key.startswith("t2i_")})
    out["rsum"] = sum(out[f"{d}_r{r}"] for d in ("i2t", "t2i") for r in (1, 5, 10))
    return out


def two_stage_metrics(first_img: np.ndarray, first_cap: np.ndarray, score_pairs: Callable[
        [np.ndarray, np.ndarray], np.ndarray], k: int, captions_per_image: int = 5) -> dict:
    """Recall metrics of "faiss top-k with a dual encoder, then re-score with ``score_pairs``".

    ``first_img`` (n_img, d) and ``first_cap`` (n_cap, d) are first-stage embeddings;
    ``score_pairs(img_idx, cap_idx)`` returns the fine similarity matrix (len(img_idx),
    len(cap_idx)) of the given images and captions, called once per query. Image queries (i2t)
    and caption queries (t2i) each get their own shortlist; the flat dict has the usual keys.
    """
    coarse = first_img @ first_cap.T  # (n_img, n_cap)
    cap_cand, img_cand = shortlists(first_img, first_cap, k)
    i2t = rerank_matrix(coarse, cap_cand,
                        lambda i, c: score_pairs(np.array([i]), c)[0])
    t2i = rerank_matrix(coarse.T, img_cand,
                        lambda j, c: score_pairs(c, np.array([j]))[:, 0]).T
    return two_way_metrics(i2t, t2i, captions_per_image)


def two_stage_metrics_batched(first_img: np.ndarray, first_cap: np.ndarray, pair_scores: Callable[
        [np.ndarray, np.ndarray], np.ndarray], k: int, captions_per_image: int = 5) -> dict:
    """:func:`two_stage_metrics` with every shortlisted pair scored in a single call.

    ``pair_scores(img_idx, cap_idx)`` takes two index arrays of length P and returns the P fine
    scores of the aligned pairs (``img_idx[p]``, ``cap_idx[p]``), as MMCA's ``pair_scores`` does.
    A pair on both an image's and a caption's shortlist is scored once. Returns the same
    metrics, plus ``scored_pairs`` (P).
    """
    coarse = first_img @ first_cap.T  # (n_img, n_cap)
    cap_cand, img_cand = shortlists(first_img, first_cap, k)
    n_img, n_cap = coarse.shape
    rows = np.concatenate([np.repeat(np.arange(n_img), cap_cand.shape[1]), img_cand.ravel()])
    cols = np.concatenate([cap_cand.ravel(), np.repeat(np.arange(n_cap), img_cand.shape[1])])
    pairs = np.unique(np.stack([rows, cols]), axis=1)  # (2, P) distinct (image, caption) pairs
    fine = np.full(coarse.shape, np.nan)
    fine[pairs[0], pairs[1]] = pair_scores(pairs[0], pairs[1])
    i2t = rerank_matrix(coarse, cap_cand, lambda i, c: fine[i, c])
    t2i = rerank_matrix(coarse.T, img_cand, lambda j, c: fine[c, j]).T
    return {**two_way_metrics(i2t, t2i, captions_per_image), "scored_pairs": pairs.shape[1]}

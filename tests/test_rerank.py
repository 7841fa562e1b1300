"""Two-stage retrieval: faiss shortlist + re-scoring, against plain references."""

import numpy as np
import pytest

from xmrlib.rerank import (faiss_topk, rerank_matrix, shortlists, two_stage_metrics,
                           two_stage_metrics_batched)

pytest.importorskip("faiss")


def test_faiss_topk_matches_sorting():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(30, 5))
    scores, idx = faiss_topk(q, g, k=4)
    full = q @ g.T
    for i in range(7):
        expected = sorted(range(30), key=lambda j: -full[i, j])[:4]
        assert list(idx[i]) == expected
        np.testing.assert_allclose(scores[i], full[i, expected], rtol=1e-5)


def test_rerank_matrix_orders_candidates_first():
    coarse = np.array([[0.9, 0.8, 0.1, 0.0]])
    fine = np.array([[0.0, 5.0, 9.0, 1.0]])
    out = rerank_matrix(coarse, np.array([[0, 1]]), lambda q, c: fine[q, c])
    # candidates 0 and 1 come first, ordered by the fine score (1 before 0),
    # then the rest in coarse order (2 before 3), although 2 has the best fine score
    assert list(np.argsort(-out[0])) == [1, 0, 2, 3]


def test_two_stage_equals_fine_when_k_covers_gallery_and_is_bounded_by_first_stage():
    from xmrlib.evaluation import recall_metrics

    rng = np.random.default_rng(1)
    n_img, cpi, d = 12, 5, 8
    img = rng.normal(size=(n_img, d)).astype(np.float32)
    cap = (np.repeat(img, cpi, axis=0) + rng.normal(size=(n_img * cpi, d))).astype(np.float32)
    fine = rng.normal(size=(n_img, n_img * cpi))
    fine[np.arange(n_img * cpi) // cpi, np.arange(n_img * cpi)] += 3.0  # a good fine scorer

    def score_pairs(i, j):
        return fine[np.ix_(i, j)]

    full = two_stage_metrics(img, cap, score_pairs, k=n_img * cpi, captions_per_image=cpi)
    exact = recall_metrics(fine, cpi)
    for key in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "rsum"):
        assert full[key] == pytest.approx(exact[key])
    first = recall_metrics(img @ cap.T, cpi)
    small = two_stage_metrics(img, cap, score_pairs, k=1, captions_per_image=cpi)
    # with k = 1 the shortlist decides R@1 on the t2i side: re-scoring cannot add a missed image
    assert small["t2i_r1"] == pytest.approx(first["t2i_r1"])


@pytest.mark.parametrize("k", [1, 3, 7])
def test_batched_two_stage_equals_per_query_and_scores_each_pair_once(k):
    rng = np.random.default_rng(2)
    n_img, cpi, d = 9, 5, 6
    img = rng.normal(size=(n_img, d)).astype(np.float32)
    cap = (np.repeat(img, cpi, axis=0) + rng.normal(size=(n_img * cpi, d))).astype(np.float32)
    fine = rng.normal(size=(n_img, n_img * cpi))
    calls = []

    def pair_scores(i, j):
        calls.append(list(zip(i.tolist(), j.tolist())))
        return fine[i, j]

    batched = two_stage_metrics_batched(img, cap, pair_scores, k, captions_per_image=cpi)
    per_query = two_stage_metrics(img, cap, lambda i, j: fine[np.ix_(i, j)], k,
                                  captions_per_image=cpi)
    assert {key: batched[key] for key in per_query} == pytest.approx(per_query)
    # the shortlisted pairs, counted by hand from plain sorting of the first-stage scores
    full = img @ cap.T
    expected = {(i, int(j)) for i in range(n_img) for j in np.argsort(-full[i])[:k]}
    expected |= {(int(i), j) for j in range(n_img * cpi) for i in np.argsort(-full[:, j])[:k]}
    assert len(calls) == 1 and sorted(calls[0]) == sorted(expected)
    assert batched["scored_pairs"] == len(expected)


def test_shortlists_shapes_and_directions():
    rng = np.random.default_rng(3)
    img, cap = rng.normal(size=(4, 3)), rng.normal(size=(10, 3))
    cap_cand, img_cand = shortlists(img, cap, 2)
    assert cap_cand.shape == (4, 2) and img_cand.shape == (10, 2)
    assert list(img_cand[0]) == list(np.argsort(-(img @ cap[0]))[:2])


def test_two_way_metrics_takes_each_direction_from_its_matrix():
    from xmrlib.evaluation import recall_metrics
    from xmrlib.rerank import two_way_metrics

    rng = np.random.default_rng(3)
    a, b = rng.random((6, 30)), rng.random((6, 30))
    ma, mb, got = recall_metrics(a), recall_metrics(b), two_way_metrics(a, b)
    for key in ("i2t_r1", "i2t_r5", "i2t_medr"):
        assert got[key] == ma[key]
    for key in ("t2i_r1", "t2i_r10", "t2i_meanr"):
        assert got[key] == mb[key]
    assert got["rsum"] == pytest.approx(ma["i2t_r1"] + ma["i2t_r5"] + ma["i2t_r10"]
                                        + mb["t2i_r1"] + mb["t2i_r5"] + mb["t2i_r10"])

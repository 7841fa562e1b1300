"""xmrlib.evaluation against plain loops (the vsepp algorithm), analytic values and hand cases."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from xmrlib import evaluation as ev


# ----------------------------------------------------------------------------- references
def loop_ranks(sims, cpi=5):
    """The vsepp algorithm: sort descending, position of the positive(s).

    Only valid on tie-free matrices (random floats); the tie test below uses a counting loop."""
    n = sims.shape[0]
    r_i2t = []
    for i in range(n):
        order = list(np.argsort(-sims[i], kind="stable"))
        r_i2t.append(min(order.index(j) for j in range(cpi * i, cpi * i + cpi)))
    r_t2i = []
    for j in range(cpi * n):
        order = list(np.argsort(-sims[:, j], kind="stable"))
        r_t2i.append(order.index(j // cpi))
    return np.array(r_i2t), np.array(r_t2i)


def loop_metrics(sims, cpi=5):
    out = {}
    for name, r in zip(("i2t", "t2i"), loop_ranks(sims, cpi)):
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * sum(1 for x in r if x < k) / len(r)
        out[f"{name}_medr"] = math.floor(float(np.median(r))) + 1
        out[f"{name}_meanr"] = sum(r) / len(r) + 1
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    return out


def assert_metrics_equal(got, want):
    assert set(got) >= set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


# ----------------------------------------------------------------------------- recall_metrics
@pytest.mark.parametrize("n,cpi,seed", [(1, 5, 0), (3, 5, 1), (17, 5, 2), (40, 5, 3), (12, 2, 4),
                                        (300, 5, 5)])
def test_recall_metrics_matches_loop(n, cpi, seed):
    sims = np.random.default_rng(seed).standard_normal((n, cpi * n))
    sims[:, ::3] += 0.5 * np.repeat(np.eye(n), cpi, axis=1)[:, ::3]  # some signal, some misses
    assert_metrics_equal(ev.recall_metrics(sims, cpi), loop_metrics(sims, cpi))
    r_i2t, r_t2i = ev.ranks(torch.from_numpy(sims), cpi)
    want_i2t, want_t2i = loop_ranks(sims, cpi)
    assert np.array_equal(r_i2t, want_i2t) and np.array_equal(r_t2i, want_t2i)


def test_recall_metrics_hand_made():
    # 2 images, 2 captions each; captions 0,1 -> image 0; captions 2,3 -> image 1
    sims = np.array([[0.9, 0.1, 0.5, 0.2],
                     [0.3, 0.8, 0.7, 0.1]])
    # i2t: image 0's best caption (0.9) is first -> rank 0; image 1: 0.8 (caption 1, wrong)
    # beats its best own caption 0.7 -> rank 1.
    # t2i: caption0 column [0.9, 0.3] -> 0; caption1 [0.1, 0.8] -> 1; caption2 [0.5, 0.7] -> 0;
    # caption3 [0.2, 0.1] -> 1.
    m = ev.recall_metrics(sims, captions_per_image=2)
    assert m["i2t_r1"] == 50.0 and m["i2t_r5"] == 100.0 and m["i2t_r10"] == 100.0
    assert m["t2i_r1"] == 50.0 and m["t2i_r5"] == 100.0
    assert m["i2t_medr"] == 1.0          # median of ranks [0, 1] = 0.5 -> floor 0 -> +1
    assert m["i2t_meanr"] == 1.5 and m["t2i_meanr"] == 1.5
    assert m["t2i_medr"] == 1.0
    assert m["rsum"] == 50 + 100 + 100 + 50 + 100 + 100


def test_ties_count_against():
    sims = np.zeros((3, 15))                            # a collapsed model: all scores equal
    r_i2t, r_t2i = ev.ranks(sims)
    assert (r_i2t == 10).all() and (r_t2i == 2).all()   # the worst ranks, not the best
    m = ev.recall_metrics(sims)                         # i2t: rank 10 misses even R@10
    assert m["i2t_r10"] == 0.0 and m["t2i_r1"] == 0.0 and m["t2i_r5"] == 100.0  # 3 images only
    sims = np.random.default_rng(0).integers(0, 3, size=(6, 30)).astype(float)
    r_i2t, r_t2i = ev.ranks(sims)
    for i in range(6):                                  # counting loop over negatives, >=
        best = max(sims[i, 5 * i:5 * i + 5])
        negs = [sims[i, j] for j in range(30) if j // 5 != i]
        assert r_i2t[i] == sum(1 for x in negs if x >= best)
    for j in range(30):
        assert r_t2i[j] == sum(1 for m in range(6) if m != j // 5 and sims[m, j] >= sims[j // 5, j])


def test_recall_metrics_bad_shape():
    with pytest.raises(ValueError, match=r"expected \(N, 5 \* N\)"):
        ev.recall_metrics(np.zeros((3, 14)))
    with pytest.raises(ValueError, match="NaN"):
        ev.recall_metrics(np.full((1, 5), np.nan))


# ----------------------------------------------------------------------------- random ranking
def test_random_expectation_analytic_small():
    # N = 2, c = 1: i2t rank uniform on {0, 1}; R@1 = 50%.
    e = ev.random_ranking_expectation(2, 1)
    assert e["i2t_r1"] == pytest.approx(50.0) and e["t2i_r1"] == pytest.approx(50.0)
    # N = 2, c = 2 (M = 4): P(rank >= 1) = C(2,1)/C(4,1) = 1/2, P(rank >= 2) = 1/6.
    e = ev.random_ranking_expectation(2, 2)
    assert e["i2t_r1"] == pytest.approx(50.0)
    assert e["i2t_meanr"] == pytest.approx(1 + (0.5 + 1 / 6))  # E[rank] = sum P(rank >= k)
    assert e["i2t_medr"] == 1.0                               # P(rank = 0) = 1/2 reaches 1/2
    # exhaustive check for N = 3, c = 2: all placements of the 2 positives among 6 slots
    e = ev.random_ranking_expectation(3, 2)
    first = [min(p) for p in __import__("itertools").combinations(range(6), 2)]
    for k in (1, 5):
        assert e[f"i2t_r{k}"] == pytest.approx(100 * np.mean([f < k for f in first]))
    assert e["i2t_meanr"] == pytest.approx(np.mean(first) + 1)


def test_random_expectation_matches_kiros_scale():
    e = ev.random_ranking_expectation(1000)
    assert e["i2t_r1"] == pytest.approx(0.1, abs=1e-9)        # 1 - 4995/5000
    assert e["t2i_r10"] == pytest.approx(1.0) and e["t2i_medr"] == 500.0
    assert e["rsum"] == pytest.approx(sum(e[k] for k in ev.RECALL_KEYS))


def test_random_sims_1000x5000_close_to_analytic():
    """One 1000 x 5000 Gaussian matrix. Tolerances: recalls are means of Bernoulli(p <= 5%)
    over 1000 (i2t) or 5000 (t2i) queries, sd <= 0.7 / 0.3 points; we allow ~4 sd. Median
    ranks: the sample median of 1000 (5000) draws, sd ~ 3% (~2%) of the range; we allow 60."""
    sims = np.random.default_rng(0).standard_normal((1000, 5000), dtype=np.float32)
    m, e = ev.recall_metrics(sims), ev.random_ranking_expectation(1000)
    for k in ("i2t_r1", "i2t_r5", "i2t_r10"):
        assert abs(m[k] - e[k]) < 0.8, k
    for k in ("t2i_r1", "t2i_r5", "t2i_r10"):
        assert abs(m[k] - e[k]) < 0.5, k
    assert abs(m["i2t_medr"] - e["i2t_medr"]) < 60 and abs(m["t2i_medr"] - e["t2i_medr"]) < 60
    assert abs(m["i2t_meanr"] - e["i2t_meanr"]) < 30 and abs(m["t2i_meanr"] - e["t2i_meanr"]) < 20


def test_simulate_random_ranking():
    s = ev.simulate_random_ranking(50, 5, n_trials=20, seed=1)
    e = ev.random_ranking_expectation(50)
    assert abs(s["t2i_r10"] - e["t2i_r10"]) < 3 and abs(s["i2t_r10"] - e["i2t_r10"]) < 5


# ----------------------------------------------------------------------------- protocols
def test_protocol_folds():
    assert ev.protocol_folds(1000, "1k") == [(0, 1000)]
    assert ev.protocol_folds(5000, "5k") == [(0, 5000)]
    assert ev.protocol_folds(5000, "5fold1k") == [(i * 1000, (i + 1) * 1000) for i in range(5)]
    assert ev.protocol_folds(100, "5fold1k")[-1] == (80, 100)
    with pytest.raises(ValueError, match="divisible by 5"):
        ev.protocol_folds(101, "5fold1k")
    with pytest.raises(ValueError, match="unknown protocol"):
        ev.protocol_folds(10, "10k")


def test_average_folds_rsum():
    rng = np.random.default_rng(0)
    folds = []
    for _ in range(5):
        sims = rng.standard_normal((20, 100)) + 1.5 * np.repeat(np.eye(20), 5, axis=1)
        folds.append(ev.recall_metrics(sims))
    avg = ev.average_folds(folds)
    mean_recalls = [np.mean([f[k] for f in folds]) for k in ev.RECALL_KEYS]
    assert avg["rsum"] == pytest.approx(sum(mean_recalls))
    assert avg["rsum"] == pytest.approx(np.mean([f["rsum"] for f in folds]))
    assert avg["i2t_medr"] == pytest.approx(np.mean([f["i2t_medr"] for f in folds]))
    # the official code's printed "rsum" (6 x mean i2t recall) differs whenever t2i != i2t
    assert avg["rsum"] != pytest.approx(2 * sum(mean_recalls[:3]))


# ----------------------------------------------------------------------------- binding
def test_binding_accuracy_hand_cases():
    cpi = 1
    groups = np.array([0, 0, 1, 1, 1])
    sims = np.array([
        # captions: 0    1    2    3    4
        [0.9, 0.5, 9.0, 0.0, 0.0],   # image 0 (group 0)
        [0.1, 0.6, 0.0, 0.0, 0.0],   # image 1 (group 0)
        [0.0, 0.0, 0.2, 0.3, 0.5],   # image 2 (group 1)
        [0.0, 0.0, 0.1, 0.3, 0.4],   # image 3 (group 1)
        [0.0, 0.0, 0.3, 0.1, 0.5],   # image 4 (group 1)
    ])
    # caption0: 0.9 > 0.1 yes; caption1: 0.6 > 0.5 yes; caption2: 0.2 vs twins 0.1, 0.3 no
    # (image 0's 9.0 is in another group, ignored); caption3: 0.3 tie with 0.3 -> no;
    # caption4: 0.5 tie with 0.5 -> no
    assert ev.binding_accuracy(sims, groups, cpi) == pytest.approx(2 / 5)
    assert ev.binding_chance(groups, cpi) == pytest.approx((2 * 0.5 + 3 / 3) / 5)
    # cpi = 2 and a singleton group: always correct
    sims2 = np.array([[1.0, 0.0, 0.0, 0.0, 5.0, 5.0],
                      [2.0, 0.5, 0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    g2 = np.array([7, 7, 3])
    # captions 0,1 (image 0): 1.0 < 2.0 wrong, 0.0 < 0.5 wrong; captions 2,3 (image 1):
    # 0.0 vs 0.0 ties -> wrong; captions 4,5 (image 2, alone) -> right
    assert ev.binding_accuracy(sims2, g2, 2) == pytest.approx(2 / 6)
    assert ev.binding_chance(g2, 2) == pytest.approx((0.5 + 0.5 + 1) / 3)


def test_binding_accuracy_matches_loop():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 40, size=120)
    sims = rng.standard_normal((120, 600))
    hits = []
    for j in range(600):
        i = j // 5
        twins = [m for m in range(120) if groups[m] == groups[i] and m != i]
        hits.append(all(sims[i, j] > sims[m, j] for m in twins))
    assert ev.binding_accuracy(sims, groups) == pytest.approx(np.mean(hits))


# ----------------------------------------------------------------------------- evaluate
class FakeDual(nn.Module):
    """A dual encoder with fixed weights: mean of valid regions @ A; caption 'c<k>' -> row k."""

    def __init__(self, a: np.ndarray, table: np.ndarray):
        super().__init__()
        self.a = nn.Parameter(torch.from_numpy(a).float())
        self.table = nn.Parameter(torch.from_numpy(table).float())
        self.config = {}

    def tokenize(self, captions):
        tokens = torch.tensor([[int(c[1:])] for c in captions])
        return tokens, torch.ones(len(captions), dtype=torch.long)

    def encode_images(self, images, n_regions=None):
        mask = (torch.arange(images.shape[1])[None, :] < n_regions[:, None]).float()  # (n, R)
        pooled = (images * mask[..., None]).sum(1) / n_regions[:, None].float()
        return pooled @ self.a

    def encode_captions(self, tokens, lengths):
        return self.table[tokens[:, 0]]

    def similarity(self, img_emb, cap_emb, cap_lens=None, img_lens=None):
        return img_emb @ cap_emb.T


class FakeCross(FakeDual):
    """Per-word caption embeddings of variable length: checks padding across batches."""

    def tokenize(self, captions):
        ids = [[int(w[1:]) for w in c.split()] for c in captions]
        lens = torch.tensor([len(x) for x in ids])
        tokens = torch.zeros(len(ids), int(lens.max()), dtype=torch.long)
        for n, x in enumerate(ids):
            tokens[n, :len(x)] = torch.tensor(x)
        return tokens, lens

    def encode_captions(self, tokens, lengths):
        return self.table[tokens]                                    # (n, L, d)

    def similarity(self, img_emb, cap_emb, cap_lens=None, img_lens=None):
        # mean over valid words of <image, word>: (n_img, n_cap)
        per_word = torch.einsum("id,cld->icl", img_emb, cap_emb)
        mask = (torch.arange(cap_emb.shape[1])[None, :] < cap_lens[:, None]).float()
        return (per_word * mask[None]).sum(-1) / cap_lens[None].float()


def fake_data(n=10, cpi=5, seed=0, words=1):
    rng = np.random.default_rng(seed)
    n_regions = rng.integers(1, 4, size=n)
    images = rng.standard_normal((n, 3, 4)).astype(np.float32)
    for i in range(n):
        images[i, n_regions[i]:] = 0.0
    n_words = 30
    if words == 1:
        captions = [f"c{rng.integers(n_words)}" for _ in range(cpi * n)]
    else:
        captions = [" ".join(f"c{rng.integers(n_words)}" for _ in range(rng.integers(1, 4)))
                    for _ in range(cpi * n)]
    groups = np.arange(n) // 2
    return SimpleNamespace(images=images, n_regions=n_regions, captions=captions,
                           captions_per_image=cpi, groups=groups), rng


def hand_sims(data, a, table, per_word=False):
    n = len(data.images)
    sims = np.zeros((n, len(data.captions)))
    for i in range(n):
        pooled = sum(data.images[i, r] for r in range(data.n_regions[i])) / data.n_regions[i]
        img = pooled @ a
        for j, cap in enumerate(data.captions):
            ids = [int(w[1:]) for w in cap.split()]
            sims[i, j] = sum(float(img @ table[k]) for k in ids) / len(ids)
    return sims


@pytest.mark.parametrize("cls,words", [(FakeDual, 1), (FakeCross, 3)])
def test_evaluate_equals_hand_sims(cls, words):
    data, rng = fake_data(words=words)
    a = rng.standard_normal((4, 6))
    table = rng.standard_normal((30, 6))
    model = cls(a, table)
    model.train()
    metrics, sims = ev.evaluate(model, data, "1k", batch_size=3, device="cpu", return_sims=True)
    want = hand_sims(data, a, table)
    assert np.allclose(sims, want, atol=1e-5)
    assert_metrics_equal({k: metrics[k] for k in ev.METRIC_KEYS}, ev.recall_metrics(want))
    assert metrics["binding_acc"] == pytest.approx(ev.binding_accuracy(want, data.groups))
    assert model.training                                 # the train/eval mode is restored
    m5 = ev.evaluate(model, data, "5fold1k", batch_size=4, device="cpu")
    folds = [ev.recall_metrics(want[a:b, 5 * a:5 * b]) for a, b in ev.protocol_folds(10, "5fold1k")]
    assert m5["rsum"] == pytest.approx(ev.average_folds(folds)["rsum"])
    assert m5["t2i_r1"] == pytest.approx(np.mean([f["t2i_r1"] for f in folds]))


def test_similarity_matrix_chunks_are_exact():
    data, rng = fake_data(n=8, words=3, seed=2)
    model = FakeCross(rng.standard_normal((4, 6)), rng.standard_normal((30, 6)))
    img, cap, lens = ev.encode_dataset(model, data, batch_size=5, device="cpu", progress=False)
    assert cap.shape[0] == 40 and lens.shape == (40,)
    whole = ev.similarity_matrix(model, img, cap, lens, chunk=1000, device="cpu")
    parts = ev.similarity_matrix(model, img, cap, lens, chunk=7, device="cpu")
    assert np.array_equal(whole, parts)


# ----------------------------------------------------------------------------- truth oracle
def _oracle_truth(rng, n=12, cpi=5, p=0.3):
    truth = rng.random((n, cpi * n)) < p
    truth[np.arange(cpi * n) // cpi, np.arange(cpi * n)] = True        # own pairs are true
    return truth


def test_oracle_recall_matches_monte_carlo_tie_breaking():
    """The analytic expectation equals the mean over many random tie-breaks of the plain ranks."""
    rng = np.random.default_rng(0)
    truth = _oracle_truth(rng)
    want = ev.oracle_recall(truth)
    trials = []
    for _ in range(3000):
        sims = truth + 0.5 * rng.random(truth.shape)                   # true above false, random
        r_i2t, r_t2i = loop_ranks(sims)
        trials.append([np.mean(r_i2t < 1), np.mean(r_i2t < 5), np.mean(r_t2i < 1),
                       np.mean(r_t2i < 5), np.mean(r_i2t) + 1, np.mean(r_t2i) + 1])
    got = np.mean(trials, axis=0)
    for key, value in zip(["i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"], got[:4]):
        assert want[key] == pytest.approx(100 * value, abs=1.5), key
    assert want["i2t_meanr"] == pytest.approx(got[4], abs=0.1)
    assert want["t2i_meanr"] == pytest.approx(got[5], abs=0.1)


def test_oracle_recall_hand_cases():
    # every caption true only of its own image: a perfect ranking
    n = 4
    perfect = np.zeros((n, 5 * n), dtype=bool)
    perfect[np.arange(5 * n) // 5, np.arange(5 * n)] = True
    assert ev.oracle_recall(perfect)["rsum"] == pytest.approx(600.0)
    # every caption true of every image: t2i R@1 = 1/n; i2t R@1 = 5/(5n) = 1/n as well
    full = np.ones((n, 5 * n), dtype=bool)
    out = ev.oracle_recall(full)
    assert out["t2i_r1"] == pytest.approx(25.0) and out["i2t_r1"] == pytest.approx(25.0)
    assert out["t2i_meanr"] == pytest.approx((n + 1) / 2)
    with pytest.raises(ValueError, match="not true of their own image"):
        ev.oracle_recall(~perfect)


def test_retrieval_ranks_against_loops():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(4, 20))
    i2t, t2i = ev.retrieval_ranks(sims, 5)
    for i in range(4):
        order = list(np.argsort(-sims[i]))
        assert i2t[i] == 1 + min(order.index(j) for j in range(5 * i, 5 * i + 5))
    for j in range(20):
        order = list(np.argsort(-sims[:, j]))
        assert t2i[j] == 1 + order.index(j // 5)
    with pytest.raises(ValueError, match="expected"):
        ev.retrieval_ranks(sims[:, :19], 5)


def test_topk_helpers():
    sims = np.array([[0.1, 0.9, 0.5], [0.8, 0.2, 0.7]])
    assert list(ev.topk_for_image(sims, 0, 2)) == [1, 2]
    assert list(ev.topk_for_caption(sims, 2, 2)) == [1, 0]


def test_rsum_per_image_averages_to_rsum():
    sims = torch.randn(12, 36, generator=torch.Generator().manual_seed(0)).numpy()
    shares = ev.rsum_per_image(sims, 3)
    assert shares.shape == (12,)
    assert shares.mean() == pytest.approx(ev.recall_metrics(sims, 3)["rsum"], rel=1e-9)


def test_rsum_per_image_hand_case():
    # 2 images, 1 caption each; image 0 ranks its caption first, image 1 ranks it second;
    # caption 0 finds image 0 first, caption 1 finds image 1 second: ranks 0 and 1
    sims = np.array([[0.9, 0.8], [0.7, 0.1]])
    # image 0: i2t hits at 1, 5, 10 (3) + t2i hits (3) = 6; image 1: i2t 2 + t2i 2 = 4
    assert ev.rsum_per_image(sims, 1).tolist() == [600.0, 400.0]


def test_paired_bootstrap_constant_and_swapped_differences():
    """A constant per-image difference has no spread; swapping the runs mirrors everything."""
    same = ev.paired_bootstrap(np.full(7, 5.0), np.full(7, 2.0), n_boot=100)
    assert same == {"delta": 3.0, "ci_low": 3.0, "ci_high": 3.0, "p_b_better": 0.0}
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    ab, ba = ev.paired_bootstrap(a, b, seed=4), ev.paired_bootstrap(b, a, seed=4)
    assert ab["delta"] == pytest.approx(float(np.mean(a - b))) == pytest.approx(-ba["delta"])
    assert ab["ci_low"] == pytest.approx(-ba["ci_high"])
    assert ab["p_b_better"] == pytest.approx(1.0 - ba["p_b_better"])  # no resample mean is 0


def test_sims_metrics_hand_folds_and_errors():
    """Metrics from given matrices: fold by fold as written here, binding inside each fold."""
    data, rng = fake_data(n=10)
    sims = rng.standard_normal((10, 50))
    got = ev.sims_metrics(sims, data, "1k")
    assert_metrics_equal({k: got[k] for k in ev.METRIC_KEYS}, ev.recall_metrics(sims))
    assert got["binding_acc"] == pytest.approx(ev.binding_accuracy(sims, data.groups))
    folds = [sims[2 * f:2 * f + 2, 10 * f:10 * f + 10] for f in range(5)]  # 2 images per fold
    got5 = ev.sims_metrics(folds, data, "5fold1k")
    want_rsum = np.mean([ev.recall_metrics(s)["rsum"] for s in folds])
    want_bind = np.mean([ev.binding_accuracy(s, data.groups[2 * f:2 * f + 2])
                         for f, s in enumerate(folds)])
    assert got5["rsum"] == pytest.approx(want_rsum)
    assert got5["binding_acc"] == pytest.approx(want_bind)
    with pytest.raises(ValueError, match="1 score matrices for the 5 fold"):
        ev.sims_metrics(sims, data, "5fold1k")
    with pytest.raises(ValueError, match=r"needs a \(10, 50\) score matrix, got \(10, 40\)"):
        ev.sims_metrics(sims[:, :40], data, "1k")

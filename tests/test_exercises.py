"""Each checker accepts a correct answer written plainly here and rejects the typical mistakes."""

import math

import numpy as np
import pytest
import torch

from xmrlib import exercises as ex

# ------------------------------------------------- correct answers, written as a student would


def recall_i2t_loops(sims, k):
    hits = 0
    for i in range(sims.shape[0]):
        order = list(np.argsort(-sims[i]))
        best = min(order.index(j) for j in range(5 * i, 5 * i + 5))
        hits += best < k
    return 100.0 * hits / sims.shape[0]


def recall_t2i_loops(sims, k):
    hits = 0
    for j in range(sims.shape[1]):
        order = list(np.argsort(-sims[:, j]))
        hits += order.index(j // 5) < k
    return 100.0 * hits / sims.shape[1]


def medr_i2t_loops(sims):
    ranks = []
    for i in range(sims.shape[0]):
        order = list(np.argsort(-sims[i]))
        ranks.append(min(order.index(j) for j in range(5 * i, 5 * i + 5)))
    return np.floor(np.median(ranks)) + 1


def hinge_loops(scores, margin, hardest):
    b = len(scores)
    total = torch.zeros(())
    for i in range(b):
        row = [torch.clamp(margin - scores[i, i] + scores[i, j], min=0) for j in range(b) if j != i]
        col = [torch.clamp(margin - scores[i, i] + scores[j, i], min=0) for j in range(b) if j != i]
        total = total + (max(row) + max(col) if hardest else sum(row) + sum(col))
    return total


class GRL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lambd * grad, None


class GRLNoMinus(GRL):
    @staticmethod
    def backward(ctx, grad):
        return ctx.lambd * grad, None


# ---------------------------------------------------------------------------------- the tests


def test_recall_at_k(capsys):
    assert ex.check_recall_at_k(recall_i2t_loops, "i2t")
    assert ex.check_recall_at_k(recall_t2i_loops, "t2i")
    assert "all 12 cases pass" in capsys.readouterr().out
    assert not ex.check_recall_at_k(lambda s, k: recall_i2t_loops(s, k) / 100, "i2t")
    assert "fraction" in capsys.readouterr().out
    assert not ex.check_recall_at_k(recall_t2i_loops, "i2t")
    out = capsys.readouterr().out
    assert "other direction" in out and "expected" in out and "random seed" in out
    assert not ex.check_recall_at_k(lambda s, k: 1 / 0, "i2t")
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not ex.check_recall_at_k(lambda s, k: None, "i2t")
    assert "a number" in capsys.readouterr().out


def test_median_rank(capsys):
    assert ex.check_median_rank(medr_i2t_loops)
    assert not ex.check_median_rank(lambda s: medr_i2t_loops(s) - 1)
    assert "off by one" in capsys.readouterr().out

    def medr_t2i_loops(sims):
        ranks = [list(np.argsort(-sims[:, j])).index(j // 5) for j in range(sims.shape[1])]
        return np.floor(np.median(ranks)) + 1

    assert ex.check_median_rank(medr_t2i_loops, "t2i")
    assert not ex.check_median_rank(lambda s: medr_t2i_loops(s) + 1, "t2i")
    assert "off by one" in capsys.readouterr().out
    assert not ex.check_median_rank(lambda s: np.mean(medr_t2i_loops(s)) + 2.5, "t2i")


def test_hinge_sum(capsys):
    assert ex.check_hinge_sum(lambda s, m: hinge_loops(s, m, hardest=False))
    unmasked = lambda s, m: (m - s.diag()[:, None] + s).clamp(min=0).sum() + \
        (m - s.diag()[None, :] + s).clamp(min=0).sum()  # noqa: E731
    assert not ex.check_hinge_sum(unmasked)
    assert "diagonal" in capsys.readouterr().out
    assert not ex.check_hinge_sum(lambda s, m: hinge_loops(s, m, False) / len(s))
    assert "do not average" in capsys.readouterr().out


def test_max_violation(capsys):
    assert ex.check_max_violation(lambda s, m: hinge_loops(s, m, hardest=True))

    def unmasked(s, m):
        d = s.diag()
        return ((m - d[:, None] + s).clamp(min=0).max(dim=1).values.sum()
                + (m - d[None, :] + s).clamp(min=0).max(dim=0).values.sum())

    assert not ex.check_max_violation(unmasked)
    out = capsys.readouterr().out
    assert "mask the diagonal" in out
    assert not ex.check_max_violation(lambda s, m: hinge_loops(s, m, hardest=False))
    assert "hardest" in capsys.readouterr().out
    assert not ex.check_max_violation(lambda s, m: 1.0)  # not a tensor


def test_lse_pooling(capsys):
    lse = lambda r, lam: torch.log(torch.exp(lam * r).sum(dim=1)) / lam  # noqa: E731
    assert ex.check_lse_pooling(lse)
    assert not ex.check_lse_pooling(lambda r, lam: r.sum(dim=1))
    assert "plain sum" in capsys.readouterr().out
    assert not ex.check_lse_pooling(lambda r, lam: torch.log(torch.exp(lam * r).sum(dim=1)))
    assert "division by lambda" in capsys.readouterr().out


def test_attention_softmax_axis(capsys):
    def attend(s, lam):
        e = torch.exp(lam * s)
        return e / e.sum(dim=1, keepdim=True)

    assert ex.check_attention_softmax_axis(attend)
    assert not ex.check_attention_softmax_axis(lambda s, lam: torch.softmax(lam * s, dim=0))
    assert "over the words" in capsys.readouterr().out


def test_gradient_reversal(capsys):
    assert ex.check_gradient_reversal(GRL.apply)
    assert not ex.check_gradient_reversal(GRLNoMinus.apply)
    assert "sign" in capsys.readouterr().out
    assert not ex.check_gradient_reversal(lambda x, lam: x)
    assert "unchanged" in capsys.readouterr().out
    assert not ex.check_gradient_reversal(lambda x, lam: -lam * x)
    assert "identity" in capsys.readouterr().out
    assert not ex.check_gradient_reversal(lambda x, lam: x.detach())


def test_cross_term(capsys):
    assert ex.check_cross_term(lambda i0, c0, i1, c1, a: i0 @ c0.t() + a * i1 @ c1.t())
    assert not ex.check_cross_term(lambda i0, c0, i1, c1, a: a * i0 @ c0.t() + i1 @ c1.t())
    assert "alpha weighs" in capsys.readouterr().out
    assert not ex.check_cross_term(lambda i0, c0, i1, c1, a: (i0 * i1).sum(1))


def random_recall_comb(n_images, k, direction, cpi=5):
    if direction == "t2i":
        return 100.0 * min(k, n_images) / n_images
    m = cpi * n_images
    return 100.0 * (1 - math.comb(m - cpi, k) / math.comb(m, k))


def test_random_ranking_recall(capsys):
    assert ex.check_random_ranking_recall(random_recall_comb)
    assert "all 10 cases pass" in capsys.readouterr().out
    assert abs(random_recall_comb(1000, 1, "i2t") - 0.1) < 1e-9     # Kiros' Random Ranking row
    assert not ex.check_random_ranking_recall(lambda n, k, d: random_recall_comb(n, k, d) / 100)
    assert "fraction" in capsys.readouterr().out
    assert not ex.check_random_ranking_recall(lambda n, k, d: 100.0 * k / n)   # i2t as t2i
    assert "hypergeometric" in capsys.readouterr().out
    with_replacement = lambda n, k, d: (100 * (1 - (1 - k / (5 * n)) ** 5) if d == "i2t"  # noqa: E731
                                        else random_recall_comb(n, k, d))
    assert not ex.check_random_ranking_recall(with_replacement)
    assert "without replacement" in capsys.readouterr().out
    no_clamp = lambda n, k, d: 100.0 * k / n if d == "t2i" else random_recall_comb(n, k, d)  # noqa: E731
    assert not ex.check_random_ranking_recall(no_clamp)
    assert "smaller than K" in capsys.readouterr().out


def test_scored_pairs(capsys):
    def loops(n_img, n_cap, k):
        return sum(min(k, n_cap) for _ in range(n_img)) + sum(min(k, n_img) for _ in range(n_cap))

    assert ex.check_scored_pairs(loops)
    assert not ex.check_scored_pairs(lambda n_img, n_cap, k: k * (n_img + n_cap))
    assert "more items than its gallery" in capsys.readouterr().out
    assert not ex.check_scored_pairs(lambda n_img, n_cap, k: n_img * k)
    assert "add the caption queries" in capsys.readouterr().out
    assert not ex.check_scored_pairs(lambda n_img, n_cap, k: n_img * n_cap)
    assert "exhaustive" in capsys.readouterr().out
    assert not ex.check_scored_pairs(lambda n_img, n_cap, k: "many")
    assert "a number" in capsys.readouterr().out


def test_feedback_never_prints_reference_source(capsys):
    ex.check_max_violation(lambda s, m: torch.zeros(()))
    out = capsys.readouterr().out
    assert "clamp" not in out and "def " not in out and "max(dim" not in out


@pytest.mark.parametrize("direction", ["x2y"])
def test_bad_direction(direction):
    with pytest.raises(ValueError, match="direction"):
        ex.check_recall_at_k(recall_i2t_loops, direction)

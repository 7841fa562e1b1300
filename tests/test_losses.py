"""hinge_triplet_loss and the selection of negatives against plain loops, a hand case, gradcheck."""

import numpy as np
import pytest
import torch

from xmrlib.losses import hinge_parts, hinge_triplet_loss, used_negatives


def loop_loss(s, positives, margin, max_violation, reduction):
    """Plain reference: queries as documented (t2i per caption, i2t per positive pair)."""
    n_img, n_cap = s.shape
    total = 0.0
    for j in range(n_cap):
        p = positives[j]
        pos = float(s[p, j])
        t2i = [max(0.0, margin + float(s[i, j]) - pos) for i in range(n_img) if i != p]
        i2t = [max(0.0, margin + float(s[p, k]) - pos) for k in range(n_cap)
               if positives[k] != p]
        for costs in (t2i, i2t):
            if costs:
                total += max(costs) if max_violation else sum(costs)
    return total / n_cap if reduction == "mean" else total


@pytest.mark.parametrize("max_violation", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("b", [1, 3, 7])
def test_square_matches_loops(max_violation, reduction, b):
    s = torch.randn(b, b, generator=torch.Generator().manual_seed(b))
    got = hinge_triplet_loss(s, 0.2, max_violation, reduction)
    want = loop_loss(s, list(range(b)), 0.2, max_violation, reduction)
    assert got.item() == pytest.approx(want, rel=1e-6, abs=1e-6)
    same = hinge_triplet_loss(s, 0.2, max_violation, reduction, positives=torch.arange(b))
    assert torch.equal(got, same)


@pytest.mark.parametrize("max_violation", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_rectangular_matches_loops(max_violation, reduction):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 9, generator=g)                 # 6 gathered images, 9 local captions
    positives = [0, 0, 2, 3, 3, 3, 5, 1, 4]             # several captions share an image
    got = hinge_triplet_loss(s, 0.3, max_violation, reduction, positives=torch.tensor(positives))
    assert got.item() == pytest.approx(loop_loss(s, positives, 0.3, max_violation, reduction),
                                       rel=1e-6)


def test_hand_computed_2x2():
    s = torch.tensor([[0.9, 0.8], [0.1, 0.5]])
    # i2t: image0: [0.2 + 0.8 - 0.9]_+ = 0.1; image1: [0.2 + 0.1 - 0.5]_+ = 0
    # t2i: caption0: [0.2 + 0.1 - 0.9]_+ = 0; caption1: [0.2 + 0.8 - 0.5]_+ = 0.5
    assert hinge_triplet_loss(s).item() == pytest.approx(0.6)
    assert hinge_triplet_loss(s, max_violation=True).item() == pytest.approx(0.6)
    assert hinge_triplet_loss(s, reduction="mean").item() == pytest.approx(0.3)


def test_hand_computed_3x3_hardest_negative():
    s = torch.tensor([[1.0, 0.9, 0.95], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # i2t, image0's row: 0.2 + 0.9 - 1 = 0.1 (caption1) and 0.2 + 0.95 - 1 = 0.15 (caption2)
    # t2i, columns 1 and 2: image0 violates by 0.1 and 0.15; all other pairs are below margin
    assert hinge_triplet_loss(s).item() == pytest.approx(0.1 + 0.15 + 0.1 + 0.15)
    # hardest only: max(0.1, 0.15) for image0, then 0.1 and 0.15 for the two captions
    assert hinge_triplet_loss(s, max_violation=True).item() == pytest.approx(0.15 + 0.1 + 0.15)


@pytest.mark.parametrize("max_violation", [False, True])
def test_gradcheck(max_violation):
    s = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3),
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: hinge_triplet_loss(x, 0.2, max_violation), (s,))
    r = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4),
                    requires_grad=True)
    pos = torch.tensor([4, 0, 0])
    assert torch.autograd.gradcheck(
        lambda x: hinge_triplet_loss(x, 0.2, max_violation, "mean", positives=pos), (r,))


def test_bad_input():
    with pytest.raises(ValueError, match="not square"):
        hinge_triplet_loss(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="positives must have shape"):
        hinge_triplet_loss(torch.zeros(2, 3), positives=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        hinge_triplet_loss(torch.zeros(2, 2), reduction="max")


def _naive_negatives(s, max_violation, margin):
    """Plain loops: ``i2t[i, j]`` marks caption ``j`` used for image query ``i`` (row);
    ``t2i[i, j]`` image ``i`` used for caption query ``j``: the rows of the transpose."""
    def used_by_rows(m):
        b = len(m)
        used = np.zeros((b, b), bool)
        for i in range(b):
            cands = [j for j in range(b) if j != i]
            if max_violation:
                cands = [max(cands, key=lambda j: m[i, j])]
            for j in cands:
                used[i, j] = margin - m[i, i] + m[i, j] > 0
        return used

    return used_by_rows(s), used_by_rows(s.T).T


@pytest.mark.parametrize("max_violation", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_used_negatives_equals_a_plain_loop(max_violation, seed):
    s = np.random.default_rng(seed).uniform(-0.3, 0.6, size=(6, 6))
    want_i2t, want_t2i = _naive_negatives(s, max_violation, 0.2)
    got_i2t, got_t2i = used_negatives(s, max_violation, 0.2)
    np.testing.assert_array_equal(got_i2t, want_i2t)
    np.testing.assert_array_equal(got_t2i, want_t2i)


def test_hinge_parts_are_the_two_directions_of_the_loss():
    scores = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    for hardest in (False, True):
        i2t, t2i = hinge_parts(scores, 0.2, hardest)
        torch.testing.assert_close(i2t + t2i, hinge_triplet_loss(scores, 0.2, hardest))
        i2t_t, t2i_t = hinge_parts(scores.t().contiguous(), 0.2, hardest)  # roles swap
        torch.testing.assert_close((i2t_t, t2i_t), (t2i, i2t))

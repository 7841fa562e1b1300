"""Auto-checkers for the chapters' implementation exercises.

Each ``check_<name>(student)`` runs the student's function (or value) on fresh random inputs,
compares it with a reference written here as a small plain function, prints which case failed
with the expected and the obtained value (and a hint for the usual mistakes), never the
solution, and returns ``True`` when every case passes. The random seed of each run is printed
on failure so the failing case can be rebuilt.

The contract of each student function is in its checker's docstring; tensors are ``torch``
tensors, similarity matrices ``numpy`` arrays with ``sims[i, j]`` = image ``i`` vs caption ``j``
and captions ``5i .. 5i+4`` belonging to image ``i``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from xmrlib.evaluation.ranking import retrieval_ranks
from xmrlib.losses import hinge_parts

# ------------------------------------------------------------------------------- references


def _ref_recall(sims: np.ndarray, k: int, direction: str, cpi: int = 5) -> float:
    ranks_i2t, ranks_t2i = retrieval_ranks(sims, cpi)
    ranks = ranks_i2t if direction == "i2t" else ranks_t2i
    return 100.0 * float(np.mean(ranks <= k))


def _ref_medr(sims: np.ndarray, direction: str, cpi: int = 5) -> float:
    ranks_i2t, ranks_t2i = retrieval_ranks(sims, cpi)
    ranks = ranks_i2t if direction == "i2t" else ranks_t2i
    return float(np.floor(np.median(ranks - 1)) + 1)   # the papers' medr on 0-based ranks


def _ref_hinge(scores: torch.Tensor, margin: float, max_violation: bool) -> torch.Tensor:
    """The hinge triplet loss summed over both directions (Kiros et al. 2014; VSE++ Eq. 5)."""
    cap_part, img_part = hinge_parts(scores, margin, max_violation)
    return cap_part + img_part


def _ref_lse(r: torch.Tensor, lambda_lse: float) -> torch.Tensor:
    """SCAN's LogSumExp pooling over the last axis: log(sum exp(lambda * r)) / lambda."""
    return torch.logsumexp(lambda_lse * r, dim=-1) / lambda_lse


def _ref_attention(s: torch.Tensor, lambda_softmax: float) -> torch.Tensor:
    """SCAN text-to-image attention: for each word (row), softmax over regions (columns)."""
    return torch.softmax(lambda_softmax * s, dim=-1)


def _ref_cross_term(i0: torch.Tensor, c0: torch.Tensor, i1: torch.Tensor, c1: torch.Tensor,
                    alpha: float) -> torch.Tensor:
    """MMCA's matching score S = i0 . c0 + alpha * i1 . c1 for every image-caption pair."""
    return i0 @ c0.T + alpha * (i1 @ c1.T)


def _ref_random_recall(n_images: int, k: int, direction: str, cpi: int) -> float:
    """Expected R@K (percent) of a random ranking. t2i: the one true image is equally likely at
    each of the N ranks, so K / N. i2t: the C true captions take C distinct positions among CN;
    the query misses when all of them lie outside the top K, with the hypergeometric probability
    C(CN - C, K) / C(CN, K) = prod_{t<K} (CN - C - t) / (CN - t)."""
    if direction == "t2i":
        return 100.0 * min(k, n_images) / n_images
    m = cpi * n_images
    miss = 1.0
    for t in range(min(k, m)):
        miss *= max(m - cpi - t, 0) / (m - t)
    return 100.0 * (1.0 - miss)


def _ref_scored_pairs(n_img: int, n_cap: int, k: int) -> int:
    """Pairs the two-stage system re-scores: each image query's shortlist of k captions and each
    caption query's shortlist of k images (a shortlist cannot outgrow its gallery)."""
    return n_img * min(k, n_cap) + n_cap * min(k, n_img)


# --------------------------------------------------------------------------------- machinery

class _Checker:
    """Runs cases and collects the first failure's message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seed = secrets.randbits(32)
        self.rng = np.random.default_rng(self.seed)
        self.torch_gen = torch.Generator().manual_seed(self.seed)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.torch_gen)

    def fail(self, case: str, expected: Any, got: Any, hint: str = "") -> bool:
        print(f"✗ {self.name}: {case}\n    expected {_show(expected)}\n    got      {_show(got)}"
              + (f"\n    hint: {hint}" if hint else "") + f"\n    (random seed {self.seed})")
        return False

    def ok(self, n_cases: int) -> bool:
        print(f"✓ {self.name}: all {n_cases} cases pass")
        return True


def _show(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return np.array2string(x, precision=4, threshold=12, edgeitems=2)
    if isinstance(x, float):
        return f"{x:.4f}"
    return repr(x)


def _call(checker: _Checker, case: str, fn: Callable, *args: Any) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except Exception as err:  # noqa: BLE001 - the student's error is the feedback
        print(f"✗ {checker.name}: {case} raised {type(err).__name__}: {err}"
              f"\n    (random seed {checker.seed})")
        return False, None


def _as_float(x: Any) -> float | None:
    """``x`` as a float (numbers, 0-d arrays, one-element tensors), or ``None``."""
    try:
        return float(x.item() if isinstance(x, (torch.Tensor, np.ndarray)) else x)
    except (TypeError, ValueError, RuntimeError):
        return None


def _sims_cases(c: _Checker) -> Iterator[tuple[str, np.ndarray]]:
    for n_img, boost in ((3, 1.5), (7, 1.5), (20, 1.0), (50, 0.0)):
        sims = c.rng.normal(size=(n_img, 5 * n_img))                  # (n_img, 5 n_img)
        sims += boost * np.repeat(np.eye(n_img), 5, axis=1) * c.rng.random((n_img, 1))
        yield f"{n_img} images, {5 * n_img} captions", sims


# ---------------------------------------------------------------------------------- checkers

def check_recall_at_k(student: Callable[[np.ndarray, int], float], direction: str = "i2t") -> bool:
    """``student(sims, k) -> float``: R@K in percent for ``direction`` ``"i2t"`` (an image query
    is a hit when any of its 5 captions is in the top K) or ``"t2i"`` (a caption query is a hit
    when its image is in the top K)."""
    if direction not in ("i2t", "t2i"):
        raise ValueError(f"direction {direction!r}: expected 'i2t' or 't2i'")
    c = _Checker(f"recall_at_k ({direction})")
    n = 0
    for label, sims in _sims_cases(c):
        for k in (1, 5, 10):
            n += 1
            case = f"{label}, K={k}"
            ok, got = _call(c, case, student, sims.copy(), k)
            if not ok:
                return False
            want, value = _ref_recall(sims, k, direction), _as_float(got)
            if value is None:
                return c.fail(case, "a number", got)
            if not math.isclose(value, want, abs_tol=1e-6):
                hint = ""
                if math.isclose(100 * value, want, abs_tol=1e-6):
                    hint = "this looks like a fraction: return percent (0-100)"
                elif math.isclose(value, _ref_recall(sims, k, _other(direction)), abs_tol=1e-6):
                    hint = "this is the other direction's recall"
                return c.fail(case, want, value, hint)
    return c.ok(n)


def _other(direction: str) -> str:
    return "t2i" if direction == "i2t" else "i2t"


def check_median_rank(student: Callable[[np.ndarray], float], direction: str = "i2t") -> bool:
    """``student(sims) -> float``: the median rank (1 = best) of the ground truth, computed as
    the papers do: ``floor(median(rank0)) + 1`` with 0-based ranks ``rank0``; for ``"i2t"`` the
    rank of an image query is that of its best-ranked caption."""
    c = _Checker(f"median_rank ({direction})")
    n = 0
    for label, sims in _sims_cases(c):
        n += 1
        ok, got = _call(c, label, student, sims.copy())
        if not ok:
            return False
        want, value = _ref_medr(sims, direction), _as_float(got)
        if value is None:
            return c.fail(label, "a number", got)
        if not math.isclose(value, want, abs_tol=1e-6):
            hint = "off by one: ranks start at 1" if abs(value - want) == 1 else ""
            return c.fail(label, want, value, hint)
    return c.ok(n)


def _loss_cases(c: _Checker) -> Iterator[tuple[str, torch.Tensor, float]]:
    for b, margin in ((4, 0.2), (7, 0.2), (16, 0.5)):
        scores = 0.5 * c.randn(b, b) + torch.diag(c.randn(b).abs())  # (B, B), positives lifted
        yield f"batch {b}, margin {margin}", scores, margin


def _check_loss(student: Callable, name: str, max_violation: bool) -> bool:
    c = _Checker(name)
    n = 0
    for case, scores, margin in _loss_cases(c):
        n += 1
        ok, got = _call(c, case, student, scores.clone(), margin)
        if not ok:
            return False
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return c.fail(case, "a scalar tensor", got)
        want = _ref_hinge(scores, margin, max_violation).item()
        if not math.isclose(got.item(), want, rel_tol=1e-4, abs_tol=1e-5):
            return c.fail(case, want, got.item(), _loss_hint(scores, margin, max_violation,
                                                             got.item()))
    return c.ok(n)


def _loss_hint(scores: torch.Tensor, margin: float, max_violation: bool, got: float) -> str:
    """A hint when ``got`` equals the value of a typical wrong answer."""
    b = len(scores)
    want = _ref_hinge(scores, margin, max_violation).item()
    diag = scores.diag()
    unmasked = ((margin + scores - diag[:, None]).clamp(min=0).max(dim=1).values.sum()
                + (margin + scores - diag[None, :]).clamp(min=0).max(dim=0).values.sum()).item()
    wrong = [(want / b, "sum over the batch, do not average"),
             *[(part.item(), "only one direction: add image → caption and caption → image")
               for part in hinge_parts(scores, margin, max_violation)]]
    if max_violation:
        wrong += [(unmasked, "the positive pair itself is a candidate: mask the diagonal first"),
                  (_ref_hinge(scores, margin, False).item(),
                   "this sums over all negatives instead of taking the hardest one")]
    else:
        wrong += [(want + 2 * b * margin, "the positive pairs (diagonal) contribute: exclude them")]
    for value, hint in wrong:
        if math.isclose(got, value, rel_tol=1e-4, abs_tol=1e-6):
            return hint
    return ""


def check_hinge_sum(student: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """``student(scores (B, B), margin) -> scalar tensor``: the sum-of-violations hinge loss
    (VSE0, Kiros et al. 2014): over both directions and every negative (positives are the
    diagonal), the sum of ``max(0, margin - s(positive) + s(negative))``."""
    return _check_loss(student, "hinge_sum (VSE0)", max_violation=False)


def check_max_violation(student: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """``student(scores (B, B), margin) -> scalar tensor``: the max-violation hinge loss of
    VSE++ (Faghri et al. 2018, Eq. 5): for each image (row) and each caption (column) only the
    hardest negative, summed over the batch."""
    return _check_loss(student, "max_violation (VSE++)", max_violation=True)


def _check_tensor_fn(c: _Checker, student: Callable, cases: list[tuple[str, torch.Tensor, float]],
                     reference: Callable[[torch.Tensor, float], torch.Tensor],
                     mistakes: list[tuple[Callable[[torch.Tensor, float], torch.Tensor], str]]
                     ) -> bool:
    """Run ``student(x, lam)`` on each case against ``reference``; on a mismatch, the hint of
    the first known mistake whose output equals the student's."""
    for case, x, lam in cases:
        ok, got = _call(c, case, student, x.clone(), lam)
        if not ok:
            return False
        want = reference(x, lam)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return c.fail(case, f"a tensor of shape {tuple(want.shape)}",
                          getattr(got, "shape", got))
        if not torch.allclose(got, want, atol=1e-5):
            hint = next((h for wrong, h in mistakes
                         if torch.allclose(got, wrong(x, lam), atol=1e-5)), "")
            return c.fail(case, want, got, hint)
    return c.ok(len(cases))


def check_lse_pooling(student: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """``student(r (n, L), lambda_lse) -> (n,)``: SCAN's LogSumExp pooling of the word-level
    relevances ``r`` over the last axis (Lee et al. 2018, Eq. 5)."""
    c = _Checker("lse_pooling (SCAN)")
    cases = [(f"r of shape ({rows}, {length}), lambda_lse {lam}", c.randn(rows, length).tanh(), lam)
             for rows, length, lam in ((3, 4, 6.0), (5, 9, 6.0), (2, 12, 20.0))]
    mistakes = [(lambda r, lam: r.sum(-1), "this is a plain sum over words"),
                (lambda r, lam: torch.logsumexp(lam * r, -1), "remember the division by lambda"),
                (lambda r, lam: r.mean(-1), "this is the average (SCAN's AVG), not LSE")]
    return _check_tensor_fn(c, student, cases, _ref_lse, mistakes)


def check_attention_softmax_axis(student: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """``student(s (L, R), lambda_softmax) -> (L, R)``: SCAN text-to-image attention weights
    from the word-region similarities ``s`` (L words, R regions): each word's weights over the
    regions are a softmax of ``lambda_softmax * s`` (Lee et al. 2018, the text-image
    formulation, Eqs. 6-8; Eqs. 1-5 are image-text)."""
    c = _Checker("attention_softmax_axis (SCAN)")
    cases = [(f"s of shape ({words} words, {regions} regions), lambda {lam}",
              c.randn(words, regions).tanh(), lam)
             for words, regions, lam in ((4, 6, 9.0), (7, 3, 9.0), (5, 36, 4.0))]
    mistakes = [(lambda s, lam: torch.softmax(lam * s, dim=0),
                 "the weights sum to 1 over the words; each word attends over regions"),
                (lambda s, lam: torch.softmax(s, dim=-1),
                 "the inverse temperature lambda is missing")]
    return _check_tensor_fn(c, student, cases, _ref_attention, mistakes)


def check_gradient_reversal(student: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """``student(x, lambd) -> tensor``: a gradient reversal layer (Ganin and Lempitsky 2015, used
    by A3VSE): the forward pass returns ``x`` unchanged, the backward pass multiplies the
    incoming gradient by ``-lambd``."""
    c = _Checker("gradient_reversal")
    n = 0
    for shape, lam in (((3, 4), 0.7), ((5,), 2.5), ((2, 3, 2), 1.0)):
        n += 1
        case = f"x of shape {shape}, lambd {lam}"
        x = c.randn(*shape).requires_grad_(True)
        upstream = c.randn(*shape)
        ok, y = _call(c, case, student, x, lam)
        if not ok:
            return False
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            return c.fail(case + " (forward)", f"a tensor of shape {tuple(shape)}",
                          getattr(y, "shape", y))
        if not torch.allclose(y.detach(), x.detach(), atol=1e-6):
            return c.fail(case + " (forward)", x, y, "the forward pass must be the identity")
        if not y.requires_grad:
            return c.fail(case + " (backward)", "an output connected to x", "no gradient path",
                          "do not detach: the gradient must flow back, reversed")
        (y * upstream).sum().backward()
        want = -lam * upstream
        if x.grad is None or not torch.allclose(x.grad, want, atol=1e-5):
            got = x.grad
            hint = ""
            if got is not None and torch.allclose(got, upstream, atol=1e-5):
                hint = "the gradient passes unchanged: the backward pass must reverse it"
            elif got is not None and torch.allclose(got, lam * upstream, atol=1e-5):
                hint = "the gradient is scaled but not reversed (sign)"
            elif got is not None and torch.allclose(got, -upstream, atol=1e-5):
                hint = "the gradient is reversed but not scaled by lambd"
            return c.fail(case + " (gradient w.r.t. x)", want, got, hint)
    return c.ok(n)


def check_cross_term(student: Callable[..., torch.Tensor]) -> bool:
    """``student(i0 (n, d), c0 (m, d), i1 (n, d), c1 (m, d), alpha) -> (n, m)``: MMCA's score
    ``S = i0 . c0 + alpha * i1 . c1`` for every image-caption pair (Wei et al. 2020, Sec. 3.5; the equation is
    unnumbered there);
    ``i0, c0`` are the self-attention embeddings, ``i1, c1`` the cross-attention ones."""
    c = _Checker("cross_term (MMCA)")
    n = 0
    for n_img, n_cap, d, alpha in ((3, 5, 4, 0.1), (4, 4, 8, 0.5), (6, 2, 3, 2.0)):
        n += 1
        case = f"{n_img} images, {n_cap} captions, d {d}, alpha {alpha}"
        i0, i1 = c.randn(n_img, d), c.randn(n_img, d)
        c0, c1 = c.randn(n_cap, d), c.randn(n_cap, d)
        ok, got = _call(c, case, student, i0, c0, i1, c1, alpha)
        if not ok:
            return False
        want = _ref_cross_term(i0, c0, i1, c1, alpha)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return c.fail(case, f"a tensor of shape {tuple(want.shape)} (images x captions)",
                          getattr(got, "shape", got))
        if not torch.allclose(got, want, atol=1e-4):
            hint = ""
            if torch.allclose(got, alpha * (i0 @ c0.T) + i1 @ c1.T, atol=1e-4):
                hint = "alpha weighs the cross-attention term (i1 . c1), not the other one"
            elif torch.allclose(got, i0 @ c0.T + i1 @ c1.T, atol=1e-4):
                hint = "the weight alpha is missing"
            return c.fail(case, want, got, hint)
    return c.ok(n)


def check_random_ranking_recall(student: Callable[[int, int, str], float],
                                captions_per_image: int = 5) -> bool:
    """``student(n_images, k, direction) -> float``: the expected R@K (percent) of a random
    ranking on ``n_images`` test images with ``captions_per_image`` captions each, for
    ``direction`` ``"i2t"`` (any of the image's captions in the top K) or ``"t2i"`` (compare
    Kiros et al. 2014's Random Ranking row)."""
    c = _Checker("random_ranking_recall")
    cpi = captions_per_image
    cases = [(n, k, d) for n, k in ((1000, 1), (100, 10), (1000, 5), (5000, 10), (4, 10))
             for d in ("i2t", "t2i")]
    for n_images, k, direction in cases:
        case = f"{direction}, {n_images} images x {cpi} captions, K={k}"
        ok, got = _call(c, case, student, n_images, k, direction)
        if not ok:
            return False
        want, value = _ref_random_recall(n_images, k, direction, cpi), _as_float(got)
        if value is None:
            return c.fail(case, "a number", got)
        if not math.isclose(value, want, rel_tol=1e-6, abs_tol=1e-9):
            return c.fail(case, want, value, _random_recall_hint(value, n_images, k, direction,
                                                                  cpi))
    return c.ok(len(cases))


def _random_recall_hint(got: float, n_images: int, k: int, direction: str, cpi: int) -> str:
    """A hint when ``got`` equals the value of a typical wrong answer."""
    other = "t2i" if direction == "i2t" else "i2t"
    wrong = [(_ref_random_recall(n_images, k, direction, cpi) / 100,
              "this looks like a fraction: give percent"),
             (100.0 * k / n_images, "K / N holds for a caption query; an image query hits when "
              "any of its captions is in the top K: use the exact (hypergeometric) chance"
              if direction == "i2t" else "a gallery smaller than K: every query is a hit"),
             (100.0 * (1 - (1 - k / (cpi * n_images)) ** cpi),
              "the captions take distinct positions: draw them without replacement"),
             (_ref_random_recall(n_images, k, other, cpi), "this is the other direction's value")]
    return next((hint for value, hint in wrong if math.isclose(got, value, rel_tol=1e-6)), "")


def check_scored_pairs(student: Callable[[int, int, int], int]) -> bool:
    """``student(n_img, n_cap, k) -> int``: how many image-caption pairs a two-stage system
    re-scores when each of the ``n_img`` image queries keeps a shortlist of ``k`` captions and
    each of the ``n_cap`` caption queries a shortlist of ``k`` images (a pair in both
    shortlists counts twice)."""
    c = _Checker("scored_pairs (two-stage re-ranking)")
    cases = [(1000, 5000, 10), (100, 500, 1), (30, 150, 50), (7, 35, 100)]
    for n_img, n_cap, k in cases:
        case = f"{n_img} images, {n_cap} captions, k={k}"
        ok, got = _call(c, case, student, n_img, n_cap, k)
        if not ok:
            return False
        want, value = _ref_scored_pairs(n_img, n_cap, k), _as_float(got)
        if value is None:
            return c.fail(case, "a number", got)
        if value != want:
            wrong = [(k * (n_img + n_cap), "a shortlist cannot hold more items than its gallery"),
                     (n_img * min(k, n_cap), "only the image queries: add the caption queries"),
                     (n_cap * min(k, n_img), "only the caption queries: add the image queries"),
                     (n_img * n_cap, "this is the exhaustive count, every pair once")]
            hint = next((h for v, h in wrong if v == value), "")
            return c.fail(case, want, got, hint)
    return c.ok(len(cases))

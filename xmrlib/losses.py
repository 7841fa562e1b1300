"""The hinge-based triplet ranking loss of visual-semantic embeddings.

For a positive pair (image ``i``, caption ``c``) with score ``s(i, c)`` and a margin ``alpha``,
every negative costs ``[alpha - s(i, c) + s(i, c')]_+`` (a wrong caption ``c'`` for the image)
and ``[alpha - s(i, c) + s(i', c)]_+`` (a wrong image ``i'`` for the caption).

* **VSE0** (Kiros et al. 2014, "Unifying visual-semantic embeddings with multimodal neural
  language models"): the sum of these violations over all negatives of the batch.
* **VSE++** (Faghri et al. 2018, "VSE++: Improving visual-semantic embeddings with hard
  negatives", Eq. 5): only the hardest negative of each query counts (``max_violation=True``).

The semantics follow the official VSE++ code (``ContrastiveLoss`` in ``model.py`` of
``fartashf/vsepp``): both directions, positives masked out of the negatives, summed over the
batch. A3VSE (Eq. 2) averages over the batch instead: ``reduction="mean"``.

The selection of the negatives lives here once: :func:`violations` (every negative's hinge
cost), :func:`hinge_parts` (the two directions' sums or hardest) and :func:`used_negatives`
(which negatives a loss uses, for plots).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["hinge_triplet_loss", "violations", "hinge_parts", "used_negatives"]


def hinge_triplet_loss(scores: Tensor, margin: float = 0.2, max_violation: bool = False,
                       reduction: str = "sum", positives: Tensor | None = None) -> Tensor:
    """Bidirectional hinge triplet loss on an image-by-caption score matrix.

    Args:
        scores: ``(n_img, n_cap)`` similarities, ``scores[i, j]`` = image ``i`` vs caption ``j``.
            Without ``positives`` it must be square ``(B, B)`` with the positives on the diagonal.
        margin: the hinge margin ``alpha`` (0.2 in VSE++ and SCAN).
        max_violation: ``False`` sums every violation (VSE0); ``True`` keeps, per query, only
            the hardest negative (VSE++).
        reduction: ``"sum"`` (VSE0/VSE++/SCAN) or ``"mean"``: the sum divided by the number of
            queries per direction, ``n_cap`` (A3VSE Eq. 2: the batch average).
        positives: optional ``LongTensor (n_cap,)``: the row (image) of each caption's positive.
            This is the rectangular case, e.g. ``n_img`` images gathered from all ranks of a
            distributed run. ``positives = arange(B)`` on a square matrix equals the default.

    Queries (the same in the square and the rectangular case):

    * caption to image (t2i): every caption ``j`` is a query with positive score
      ``p_j = scores[positives[j], j]``; its negatives are the images ``i != positives[j]``
      (column ``j``).
    * image to caption (i2t): every positive pair ``(positives[j], j)`` is a query with the
      same positive score ``p_j``; its negatives are the captions ``k`` of row ``positives[j]``
      whose own image differs, ``positives[k] != positives[j]`` (another caption of the same
      image is not a negative).

    Returns:
        a scalar tensor.
    """
    if scores.dim() != 2:
        raise ValueError(f"hinge_triplet_loss: scores must be 2-D (n_img, n_cap), got shape "
                         f"{tuple(scores.shape)}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"hinge_triplet_loss: reduction must be 'sum' or 'mean', "
                         f"got {reduction!r}")
    n_img, n_cap = scores.shape
    if positives is None:
        if n_img != n_cap:
            raise ValueError(f"hinge_triplet_loss: scores of shape {tuple(scores.shape)} is not "
                             "square; pass positives (n_cap,) giving each caption's image")
        positives = torch.arange(n_cap, device=scores.device)
    positives = torch.as_tensor(positives, device=scores.device).long()
    if positives.shape != (n_cap,):
        raise ValueError(f"hinge_triplet_loss: positives must have shape ({n_cap},), got "
                         f"{tuple(positives.shape)}")
    if n_cap and (positives.min() < 0 or positives.max() >= n_img):
        raise ValueError(f"hinge_triplet_loss: positives must index the {n_img} images (rows)")

    i2t, t2i = hinge_parts(scores, margin, max_violation, positives)
    total = i2t + t2i
    if reduction == "mean":
        total = total / max(n_cap, 1)
    return total


def hinge_parts(scores: Tensor, margin: float = 0.2, max_violation: bool = False,
                positives: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The two directions of :func:`hinge_triplet_loss` (reduction ``"sum"``) apart:
    ``(image-to-text, text-to-image)``, each summed over its queries; per query the sum over
    every negative, or with ``max_violation`` only the hardest negative's cost."""
    if positives is None:
        positives = torch.arange(scores.shape[1], device=scores.device)
    cost_s, cost_im = violations(scores, margin, positives)
    if max_violation:
        # Costs are >= 0 and masked entries are 0, so an image without negatives costs 0.
        return cost_s.max(dim=1).values.sum(), cost_im.max(dim=0).values.sum()
    return cost_s.sum(), cost_im.sum()


def violations(scores: Tensor, margin: float, positives: Tensor) -> tuple[Tensor, Tensor]:
    """The hinge cost ``[margin - s(positive) + s(negative)]_+`` of every query and negative,
    0 where the item is not a negative (see :func:`hinge_triplet_loss` for the queries).

    ``scores`` (n_img, n_cap), ``positives`` (n_cap,) the row of each caption's positive.
    Returns ``(cost_s, cost_im)``: ``cost_s`` (n_cap, n_cap), row ``j`` the image-to-text query
    of pair ``(positives[j], j)`` against every caption; ``cost_im`` (n_img, n_cap), column
    ``j`` the text-to-image query of caption ``j`` against every image.
    """
    n_img, n_cap = scores.shape
    cols = torch.arange(n_cap, device=scores.device)
    pos = scores[positives, cols]                                          # (n_cap,)

    # t2i: column j, negatives are the other images.
    not_pos_img = torch.arange(n_img, device=scores.device)[:, None] != positives[None, :]
    cost_im = (margin + scores - pos[None, :]).clamp(min=0)               # (n_img, n_cap)
    cost_im = cost_im.masked_fill(~not_pos_img, 0)

    # i2t: query j uses row positives[j]; negatives are the captions of other images.
    rows = scores[positives]                                               # (n_cap, n_cap)
    not_pos_cap = positives[:, None] != positives[None, :]
    cost_s = (margin + rows - pos[:, None]).clamp(min=0)                   # (n_cap queries, n_cap)
    cost_s = cost_s.masked_fill(~not_pos_cap, 0)

    return cost_s, cost_im


def used_negatives(scores: np.ndarray, max_violation: bool,
                   margin: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Which negatives a hinge loss uses on one batch's ``scores`` (B, B) (positives on diagonal).

    Returns boolean masks ``(i2t, t2i)`` of shape (B, B): ``i2t[i, j]`` marks caption ``j`` as a
    negative used for image ``i`` (row), ``t2i[i, j]`` marks image ``i`` used for caption ``j``
    (column). Sum of violations (VSE0, Kiros): every negative with ``margin - s_ii + s_ij > 0``.
    Max violation (VSE++, Faghri et al. 2018): the hardest negative of each row/column, if it
    violates the margin (otherwise its hinge is zero and it contributes nothing).
    """
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    b = s.shape[0]
    cost_i2t, cost_t2i = violations(s, margin, torch.arange(b))  # (B, B) each
    used_i2t, used_t2i = (cost_i2t > 0).numpy(), (cost_t2i > 0).numpy()
    if not max_violation:
        return used_i2t, used_t2i
    hard_i2t = np.zeros_like(used_i2t)
    hard_i2t[np.arange(b), cost_i2t.argmax(dim=1).numpy()] = True  # the hardest costs the most
    hard_t2i = np.zeros_like(used_t2i)
    hard_t2i[cost_t2i.argmax(dim=0).numpy(), np.arange(b)] = True
    return hard_i2t & used_i2t, hard_t2i & used_t2i

"""Binding accuracy on Shapes: does a caption score its own image above its swapped twins?"""

from __future__ import annotations

from typing import Any

import numpy as np

from xmrlib.evaluation.ranking import ROW_CHUNK, score_matrix


def binding_accuracy(sims: Any, groups: Any, captions_per_image: int = 5) -> float:
    """Fraction of captions that score their own image strictly above its swapped twins.

    Shapes scenes come in groups that share objects and colours but swap their bindings
    ("red circle, blue square" vs "blue circle, red square"). For caption ``j`` of image
    ``i``, the candidates are the images with ``groups[m] == groups[i]``; the caption is
    correct when ``sims[i, j] > sims[m, j]`` for every twin ``m != i`` (a tie is wrong). A
    caption whose image has no twin is trivially correct, matching :func:`binding_chance`.
    """
    sims = score_matrix(sims, captions_per_image)
    groups = np.asarray(groups)
    n_img, n_cap = sims.shape
    if groups.shape != (n_img,):
        raise ValueError(f"groups must have shape ({n_img},) (one id per image), got "
                         f"{groups.shape}")
    img_of_cap = np.arange(n_cap) // captions_per_image
    correct = np.empty(n_cap, dtype=bool)
    for s in range(0, n_cap, ROW_CHUNK * 4):
        cols = np.arange(s, min(s + ROW_CHUNK * 4, n_cap))
        own = img_of_cap[cols]
        twin = (groups[:, None] == groups[own][None, :]) & (np.arange(n_img)[:, None] != own)
        block = sims[:, cols]                                           # (N, c)
        twin_best = np.where(twin, block, -np.inf).max(axis=0)          # (c,) best twin score
        correct[cols] = block[own, np.arange(len(cols))] > twin_best
    return float(correct.mean())


def binding_chance(groups: Any, captions_per_image: int = 5) -> float:
    """Binding accuracy of random scores: the mean over captions of 1 / (size of its group).

    Every caption has the same number of captions per image, so this is the mean over images.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty 1-D array, got shape {groups.shape}")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return float(np.mean(1.0 / counts[inverse]))


def binding_ceiling(captions: list[str], groups: Any, captions_per_image: int = 5) -> float:
    """The highest :func:`binding_accuracy` any scoring function can reach on these captions.

    A model gives equal caption texts equal scores. When images of one binding group share a
    caption text (e.g. a count caption, true of every twin), at most the captions of one of
    those images can score their own image strictly above the others, so for every
    (group, text) only the largest number of captions held by a single image can be correct.
    """
    groups = np.asarray(groups)
    if len(captions) != captions_per_image * len(groups):
        raise ValueError(f"expected {captions_per_image} captions per image for {len(groups)} "
                         f"images, got {len(captions)} captions")
    held: dict[tuple[int, str], dict[int, int]] = {}
    for j, text in enumerate(captions):
        img = j // captions_per_image
        per_image = held.setdefault((int(groups[img]), text), {})
        per_image[img] = per_image.get(img, 0) + 1
    return sum(max(c.values()) for c in held.values()) / len(captions)

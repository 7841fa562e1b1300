"""Evaluation protocols: which images (and their captions) form each test gallery."""

from __future__ import annotations

PROTOCOLS = ("1k", "5k", "5fold1k")


def protocol_folds(n_images: int, protocol: str) -> list[tuple[int, int]]:
    """Image ranges ``[(start, stop), ...]`` of an evaluation protocol.

    * ``"1k"``: one gallery of all test images (Flickr30K's test split has 1000 images).
    * ``"5k"``: one gallery of all test images (COCO 5K: the 5000 images of ``testall``).
    * ``"5fold1k"``: COCO 1K, five consecutive folds of 1000 images of the 5000, each
      evaluated on its own, the metrics averaged over folds (Karpathy & Fei-Fei 2015; VSE++;
      SCAN). On smaller test sets (Shapes) the test set is cut into 5 equal consecutive folds,
      so ``n_images`` must be divisible by 5.

    Captions follow their images: fold ``(a, b)`` holds captions ``cpi*a .. cpi*b - 1``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {PROTOCOLS}")
    if n_images < 1:
        raise ValueError(f"protocol {protocol!r} needs at least one image, got {n_images}")
    if protocol != "5fold1k":
        return [(0, n_images)]
    if n_images % 5:
        raise ValueError(f"protocol '5fold1k' cuts the test set into 5 equal folds: "
                         f"{n_images} images is not divisible by 5")
    size = n_images // 5
    return [(k * size, (k + 1) * size) for k in range(5)]

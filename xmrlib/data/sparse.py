"""Sparse parallel corpora for A3VSE (Huang et al., ACM MM 2019, Sec. 4.1) and their loaders.

A *sparse split* keeps a fraction of the training images with 1, 2 or 5 of their captions (the
annotated pairs D^l) and turns every other training image into an un-annotated image v^u that
only has its automatically extracted *regional semantics* (D^u). As the paper ("we randomly
shuffle once and trim the training set"), the images are shuffled once per seed and the annotated
set is a prefix of that order, so a smaller fraction is a subset of a larger one; each image's
captions are shuffled once too and the first ``k`` kept, so 1/5 is a subset of 2/5 of 5/5.

Semantic sequences (Sec. 3.2): the phrases of an image's regional semantics (``attribute class``,
e.g. "blue car") joined in confidence order into one "sentence", tokenised by the same vocabulary
as the captions. Our vocabulary choice (the paper is silent): it is built from the *annotated*
captions plus the semantic sequences of the *un-annotated* images, i.e. from all the training
text the model reads; un-annotated images' captions are never used.

Global semantics s_g (Table 5 "swap s with s_g", and the unsupervised s_g baseline): the paper
takes image-level tags of classifiers trained on other datasets. On Shapes we derive them from the
scene description: the set of shape classes, the set of colours and the background, as separate,
*unbound* tags in a fixed order ("circle square blue red grey-background" for a red circle and a
blue square on grey). They name the same words as the captions but lose which colour belongs to
which shape (and size and position), as image-level tags do; unlike a real tagger they have no
label noise (an oracle tagger), which favours s_g.

Real data: regional semantics are read from ``{split}_semantics.txt`` by
:func:`xmrlib.data.load_precomp`; without them :func:`sparse_split` raises naming the file and the
format (:data:`SEMANTICS_FORMAT`). Global semantics need Shapes scenes.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from xmrlib.data.precomp import SEMANTICS_FORMAT, PrecompData

SEMANTIC_KINDS = ("regional", "global")
Tokenizer = Callable[[list[str]], tuple[Tensor, Tensor]]


def words(text: str) -> list[str]:
    """Lower-cased word tokens of a text (letters, digits, hyphens), as counted for the IoU."""
    return re.findall(r"[a-z0-9\-]+", text.lower())


def vocabulary_iou(texts_a: list[str], texts_b: list[str]) -> float:
    """Intersection over union of the word sets of two corpora (A3VSE Sec. 4.6 reports it
    between captions and regional / global semantics), in percent."""
    a = {w for t in texts_a for w in words(t)}
    b = {w for t in texts_b for w in words(t)}
    return 100.0 * len(a & b) / max(1, len(a | b))


def regional_sequence(semantics: list[tuple[str, float]], min_confidence: float = 0.0) -> str:
    """Phrases with confidence >= ``min_confidence`` joined in the given (confidence) order."""
    return " ".join(phrase for phrase, conf in semantics if conf >= min_confidence)


def _get(obj: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in obj:
            return obj[key]
    raise KeyError(f"scene object {obj} has none of the fields {keys}")


def global_tags(scene: dict[str, Any]) -> list[str]:
    """Image-level tags of a Shapes scene: sorted shape classes, sorted colours, background."""
    objects = scene["objects"]
    shapes = sorted({str(_get(o, "shape")) for o in objects})
    colours = sorted({str(_get(o, "colour", "color")) for o in objects})
    background = scene.get("background")
    tail = [f"{background}-background"] if background else []
    return shapes + colours + tail


def global_sequence(scene: dict[str, Any]) -> str:
    """The global semantics s_g of a scene as one text (tags joined by spaces)."""
    return " ".join(global_tags(scene))


@dataclass
class SparseSplit:
    """A sparse parallel corpus over the training split ``data`` (see the module docstring).

    ``annotated`` (n_l,) and ``unannotated`` (n_u,) are sorted image indices into ``data``;
    ``caption_ids`` (n_l, k) are the kept caption indices (into ``data.captions``) per annotated
    image, in the order of ``annotated``.
    """

    data: PrecompData
    image_fraction: float
    captions_per_image: int
    seed: int
    annotated: np.ndarray
    unannotated: np.ndarray
    caption_ids: np.ndarray

    @property
    def label(self) -> str:
        """Paper-style name, e.g. ``"10% img, 5/5 sent"``."""
        return (f"{100 * self.image_fraction:g}% img, "
                f"{self.captions_per_image}/{self.data.captions_per_image} sent")

    def counts(self) -> dict[str, Any]:
        """The columns of A3VSE Tables 1/3: % images, sentences per image, % and # annotations."""
        total_pairs = len(self.data.captions)
        n_pairs = int(self.caption_ids.size)
        return {"setting": self.label, "pct_img": 100 * self.image_fraction,
                "sent": f"{self.captions_per_image}/{self.data.captions_per_image}",
                "pct_ann": 100 * n_pairs / total_pairs, "n_pairs": n_pairs,
                "n_annotated_images": int(len(self.annotated)),
                "n_unannotated_images": int(len(self.unannotated)),
                "n_train_pairs_full": total_pairs}

    def annotated_captions(self) -> list[str]:
        """The captions of the annotated pairs, image-major (k per annotated image)."""
        return [self.data.captions[j] for j in self.caption_ids.reshape(-1)]

    def identity(self) -> dict[str, Any]:
        """What identifies this split (for run folders): the protocol values and the data."""
        return {"image_fraction": self.image_fraction,
                "captions_per_image": self.captions_per_image, "seed": self.seed}

    def annotated_data(self) -> PrecompData:
        """A :class:`PrecompData` of the annotated images with their ``k`` kept captions each,
        so that :func:`xmrlib.data.make_loader` and ``fit_or_load`` train baselines on exactly
        the annotated pairs. Its ``split`` and ``manifest`` name the sparse setting (so run
        folders of different settings never collide). Arrays are copies of the selected rows."""
        idx = self.annotated
        sparse_name = (f"{self.data.split}-sparse-{self.image_fraction:g}img-"
                       f"{self.captions_per_image}sent-seed{self.seed}")
        return dataclasses.replace(
            self.data, split=sparse_name, images=np.ascontiguousarray(self.data.images[idx]),
            captions=self.annotated_captions(), captions_per_image=self.captions_per_image,
            n_regions=self.data.n_regions[idx],
            boxes=None if self.data.boxes is None else self.data.boxes[idx],
            groups=None if self.data.groups is None else self.data.groups[idx],
            scenes=None if self.data.scenes is None else [self.data.scenes[i] for i in idx],
            semantics=(None if self.data.semantics is None
                       else [self.data.semantics[i] for i in idx]),
            image_paths=(None if self.data.image_paths is None
                         else [self.data.image_paths[i] for i in idx]),
            caption_images=(None if self.data.caption_images is None else np.ascontiguousarray(
                self.data.caption_images[self.caption_ids.reshape(-1)])),
            manifest={**self.data.manifest, "sparse": self.identity()})

    def semantic_sequences(self, kind: str = "regional", min_confidence: float = 0.0,
                           images: np.ndarray | None = None) -> list[str]:
        """Semantic sequences of ``images`` (default: the un-annotated ones)."""
        idx = self.unannotated if images is None else images
        return semantic_sequences(self.data, idx, kind, min_confidence)

    def vocabulary_texts(self, kind: str = "regional", min_confidence: float = 0.0) -> list[str]:
        """The training text of this split: annotated captions + un-annotated sequences."""
        return self.annotated_captions() + self.semantic_sequences(kind, min_confidence)


def semantic_sequences(data: PrecompData, images: np.ndarray, kind: str = "regional",
                       min_confidence: float = 0.0) -> list[str]:
    """Regional (from ``data.semantics``) or global (from ``data.scenes``) sequences."""
    if kind not in SEMANTIC_KINDS:
        raise ValueError(f"semantics kind {kind!r}: expected one of {SEMANTIC_KINDS}")
    if kind == "regional":
        _require_semantics(data)
        return [regional_sequence(data.semantics[i], min_confidence) for i in images]
    if data.scenes is None:
        raise ValueError(f"{Path(data.root) / (data.split + '_scenes.json')}: global semantics "
                         "are derived from Shapes scene descriptions, which this split lacks")
    return [global_sequence(data.scenes[i]) for i in images]


def _require_semantics(data: PrecompData) -> None:
    if data.semantics is None:
        path = Path(data.root) / f"{data.split}_semantics.txt"
        fmt = SEMANTICS_FORMAT.replace("{split}", data.split)
        raise ValueError(f"{path}: A3VSE needs the regional semantics of the training images "
                         f"and this file is missing. Make it beside {data.split}_ims.npy: "
                         f"{fmt}. Real regional semantics come from a Visual Genome detector: "
                         "the bottom-up-attention model that extracted the features predicts an "
                         "attribute and a class with a score for each of its regions, written "
                         "as 'attribute class:score' (see the book's real-data guide)")


def sparse_split(data: PrecompData, image_fraction: float, captions_per_image: int,
                 seed: int = 0, require_semantics: bool = True) -> SparseSplit:
    """Keep ``round(image_fraction * N)`` images (at least 1) with ``captions_per_image`` of
    their captions each; the rest are un-annotated. Deterministic in ``seed``."""
    if not 0 < image_fraction <= 1:
        raise ValueError(f"image_fraction must be in (0, 1], got {image_fraction}")
    cpi = data.captions_per_image
    if not 1 <= captions_per_image <= cpi:
        raise ValueError(f"captions_per_image must be in 1..{cpi}, got {captions_per_image}")
    if require_semantics:
        _require_semantics(data)
    n = len(data.images)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    caption_order = rng.permuted(np.tile(np.arange(cpi), (n, 1)), axis=1)  # (N, cpi)
    n_ann = max(1, int(round(image_fraction * n)))
    annotated = np.sort(order[:n_ann])
    unannotated = np.sort(order[n_ann:])
    kept = np.sort(caption_order[annotated, :captions_per_image], axis=1)  # (n_l, k)
    caption_ids = annotated[:, None] * cpi + kept
    return SparseSplit(data, float(image_fraction), int(captions_per_image), int(seed),
                       annotated.astype(np.int64), unannotated.astype(np.int64),
                       caption_ids.astype(np.int64))


def sparsity_grid(data: PrecompData, fractions: list[float], captions: list[int],
                  seed: int = 0) -> list[SparseSplit]:
    """Every (fraction, captions per image) setting of Tables 1/3, fraction-major."""
    return [sparse_split(data, f, k, seed) for f in fractions for k in captions]


def _images_tensor(data: PrecompData, idx: np.ndarray) -> tuple[Tensor, Tensor]:
    images = torch.from_numpy(np.asarray(data.images[idx], dtype=np.float32))
    return images, torch.from_numpy(np.asarray(data.n_regions[idx], dtype=np.int64))


class SparseLoader:
    """Batches of a sparse split: annotated pairs, plus (A3VSE) un-annotated images with their
    semantic sequences.

    An epoch is one pass over the annotated pairs in batches of ``batch_size`` (the last one may
    be short), or, with ``steps_per_epoch``, that many full batches drawn from a shuffled stream
    of the pairs that restarts when exhausted (so that every sparsity setting and every model
    trains for the same number of steps, as the paper keeps the iteration count fixed). With
    ``semantics`` (``"regional"`` or ``"global"``) every step also draws ``u_batch_size``
    un-annotated images (default ``batch_size``, a 1:1 ratio; the paper is silent) from their
    own restarting shuffled stream; ``semantics=None`` gives plain pair batches (baselines and
    the vanilla model). The order of epoch ``e`` depends only on ``(seed, e)``
    (:meth:`set_epoch`), so a resumed run sees the same batches. Keys: ``images``,
    ``n_regions``, ``tokens``, ``lengths``, ``image_idx``, ``caption_idx`` (as
    :func:`xmrlib.data.make_loader`, indices into the full training split) and, with
    semantics, ``u_images``, ``u_n_regions``, ``s_tokens``, ``s_lengths``, ``u_image_idx``.
    """

    def __init__(self, split: SparseSplit, tokenizer: Tokenizer, batch_size: int,
                 semantics: str | None = "regional", u_batch_size: int | None = None,
                 seed: int = 0, min_confidence: float = 0.0,
                 steps_per_epoch: int | None = None) -> None:
        if semantics is not None and not len(split.unannotated):
            raise ValueError("SparseLoader: semantics were asked for but the split has no "
                             "un-annotated images (image_fraction = 1); pass semantics=None")
        self.split, self.tokenizer, self.batch_size = split, tokenizer, batch_size
        self.u_batch_size = u_batch_size or batch_size
        self.seed, self.epoch, self.steps_per_epoch = seed, 0, steps_per_epoch
        self.sequences = (None if semantics is None
                          else split.semantic_sequences(semantics, min_confidence))
        self.pair_images = np.repeat(split.annotated, split.captions_per_image)  # (n_pairs,)
        self.pair_captions = split.caption_ids.reshape(-1)

    def __len__(self) -> int:
        return self.steps_per_epoch or math.ceil(len(self.pair_captions) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling of epoch ``epoch``."""
        self.epoch = epoch

    @staticmethod
    def _stream(rng: np.random.Generator, n: int, needed: int) -> np.ndarray:
        """Concatenated permutations of ``range(n)``, cut to ``needed`` positions."""
        passes = math.ceil(needed / n)
        return np.concatenate([rng.permutation(n) for _ in range(passes)])[:needed]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n_pairs = len(self.pair_captions)
        needed = len(self) * self.batch_size if self.steps_per_epoch else n_pairs
        order = self._stream(rng, n_pairs, needed)
        u_order = (None if self.sequences is None else
                   self._stream(rng, len(self.split.unannotated), len(self) * self.u_batch_size))
        data = self.split.data
        for step in range(len(self)):
            pairs = order[step * self.batch_size:(step + 1) * self.batch_size]
            img_idx, cap_idx = self.pair_images[pairs], self.pair_captions[pairs]
            images, n_regions = _images_tensor(data, img_idx)
            tokens, lengths = self.tokenizer([data.captions[j] for j in cap_idx])
            batch = {"images": images, "n_regions": n_regions, "tokens": tokens,
                     "lengths": lengths, "image_idx": torch.from_numpy(img_idx),
                     "caption_idx": torch.from_numpy(cap_idx)}
            if u_order is not None:
                u_pos = u_order[step * self.u_batch_size:(step + 1) * self.u_batch_size]
                u_idx = self.split.unannotated[u_pos]
                u_images, u_n_regions = _images_tensor(data, u_idx)
                s_tokens, s_lengths = self.tokenizer([self.sequences[p] for p in u_pos])
                batch.update(u_images=u_images, u_n_regions=u_n_regions, s_tokens=s_tokens,
                             s_lengths=s_lengths, u_image_idx=torch.from_numpy(u_idx))
            yield batch

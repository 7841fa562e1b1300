"""Format-exact miniatures of the real data sets: tiny Flickr30K and MS-COCO folders on disk.

They are written in exactly the layout of the releases the book reads, so that tests, CI and a
user who has just downloaded the real features can take every chapter through the real-data
path (``--profile smoke``) in minutes on a CPU:

```text
OUT/data/f30k_precomp/{train,dev,test}_ims.npy         (N, R, D) float32, region features
OUT/data/f30k_precomp/{train,dev,test}_caps.txt        5 captions per image, image-major, UTF-8
OUT/data/f30k_precomp/{split}_semantics.txt            regional semantics (A3VSE, chapter 06)
OUT/data/coco_precomp/... and testall_ims.npy / testall_caps.txt (the 5K test set)
OUT/vocab/{f30k,coco}_precomp_vocab.json               SCAN's vocabulary JSON format
```

This is SCAN's release (kuanghuei/SCAN: ``data/{data}_precomp``, ``vocab/{data}_vocab.json`` with
``word2idx``/``idx2word``/``idx``, the words of the train and dev captions seen at least 4 times).
The split sizes that the protocols fix are real (Flickr30K ``test``: 1000 images; COCO ``test``:
1000 and ``testall``: 5000); training and dev splits are small, and regions (R) and feature size
(D) are small. ``layout="vsepp"`` writes vsepp's precomp layout instead: one global feature row
*per caption* (N x 5 rows, as vsepp's 10-crop files), and no vocabulary file (vsepp ships pickles).

The content is synthetic but learnable: each image holds 2-3 objects (an attribute and a noun);
a region's feature is a non-negative, sparse (ReLU) mix of its object's word vectors plus noise,
like bottom-up-attention features, and every caption names objects of its image. Captions use
SCAN's tokenised style ("... on a red bench ."), with some non-ASCII words ("café") and clitics
("man's"). The semantics files list each region's ``attribute noun`` with a confidence, with
detector-like noise.

CLI: ``python -m xmrlib.data.fixtures OUT [--layout scan|vsepp] [--regions R] [--dim D]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from xmrlib.utils import atomic_write_text
from xmrlib.vocab import SPECIALS, tokenize

NOUNS = ("man", "woman", "child", "dog", "cat", "horse", "bicycle", "car", "bus", "boat",
         "bench", "tree", "ball", "kite", "umbrella", "table", "pizza", "guitar", "train",
         "surfboard", "café", "crêpe", "skateboard", "bird")
ATTRIBUTES = ("red", "blue", "green", "white", "black", "yellow", "young", "old", "small",
              "large", "wooden", "striped")
VERBS = ("next to", "near", "behind", "in front of", "beside", "on")
OPENERS = ("A photo of", "There is", "An image showing", "We see", "Here is")
#: Real split sizes that the protocols fix (the other sizes are the fixture's).
PROTOCOL_SIZES = {"f30k_precomp": {"test": 1000}, "coco_precomp": {"test": 1000, "testall": 5000}}
CAPTIONS_PER_IMAGE = 5


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(attr: str, noun: str) -> str:
    return f"{_article(attr)} {attr} {noun}"


def _captions(objects: list[tuple[int, int]], rng: np.random.Generator) -> list[str]:
    """Five captions of one image, each naming some of its (attribute, noun) objects."""
    names = [(ATTRIBUTES[a], NOUNS[n]) for a, n in objects]
    out = []
    for k in range(CAPTIONS_PER_IMAGE):
        (a1, n1), (a2, n2) = names[k % len(names)], names[(k + 1) % len(names)]
        verb = VERBS[rng.integers(len(VERBS))]
        if k == 0:
            text = f"{_phrase(a1, n1).capitalize()} {verb} {_phrase(a2, n2)} ."
        elif k == 1:
            text = f"{OPENERS[rng.integers(len(OPENERS))]} {_phrase(a1, n1)} and {_article(n2)} {n2} ."
        elif k == 2:
            text = f"The {n1}'s {a2} {n2} is {verb} it ."
        elif k == 3:
            text = f"{_article(n1).capitalize()} {n1} {verb} {_phrase(a2, n2)}"
        else:
            text = " , ".join(f"{a} {n}" for a, n in names).capitalize() + " ."
        out.append(text)
    return out


def _split_arrays(n: int, regions: int, dim: int, rng: np.random.Generator,
                  word_vectors: np.ndarray) -> tuple[np.ndarray, list[str], list[str]]:
    """Features (n, regions, dim), 5n captions and n semantics lines of one split."""
    n_attr = len(ATTRIBUTES)
    feats = np.empty((n, regions, dim), dtype=np.float32)
    captions: list[str] = []
    semantics: list[str] = []
    for i in range(n):
        k = int(rng.integers(2, min(3, regions) + 1))
        objects = [(int(rng.integers(n_attr)), int(rng.integers(len(NOUNS)))) for _ in range(k)]
        for r in range(regions):
            x = rng.normal(0.0, 0.5, dim)
            if r < k:
                a, o = objects[r]
                x += word_vectors[o] + 0.5 * word_vectors[len(NOUNS) + a]
            feats[i, r] = np.maximum(x, 0.0)       # ReLU outputs, as bottom-up attention's
        captions += _captions(objects, rng)
        dets = [(f"{ATTRIBUTES[a]} {NOUNS[o]}", float(rng.uniform(0.3, 0.99))) for a, o in objects]
        if rng.random() < 0.3:                     # a false positive
            dets.append((f"{ATTRIBUTES[rng.integers(n_attr)]} {NOUNS[rng.integers(len(NOUNS))]}",
                         float(rng.uniform(0.05, 0.4))))
        dets.sort(key=lambda d: -d[1])
        semantics.append("|".join(f"{p}:{c:.2f}" for p, c in dets))
    return feats, captions, semantics


def official_vocab_json(captions: Sequence[str], threshold: int = 4) -> dict:
    """A vocabulary in SCAN's JSON format: special tokens, then the words seen at least
    ``threshold`` times in first-seen order (SCAN's ``build_vocab`` keeps ``Counter`` order)."""
    counts = Counter(w for c in captions for w in tokenize(c))
    words = [*SPECIALS, *(w for w, n in counts.items() if n >= threshold)]
    return {"word2idx": {w: i for i, w in enumerate(words)},
            "idx2word": {str(i): w for i, w in enumerate(words)}, "idx": len(words)}


def make_precomp_fixture(folder: str | Path, dataset: str = "f30k_precomp", n_train: int = 120,
                         n_dev: int = 40, regions: int = 4, dim: int = 16, seed: int = 0,
                         layout: str = "scan", semantics: bool = True,
                         sizes: dict[str, int] | None = None) -> dict[str, list[str]]:
    """Write one data set's folder; returns each split's captions (for the vocabulary).

    ``sizes`` overrides the protocol sizes (``{"testall": 4000}`` writes a wrong 5K split, for
    tests of the checks).
    """
    if dataset not in PROTOCOL_SIZES:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(PROTOCOL_SIZES)}")
    if layout not in ("scan", "vsepp"):
        raise ValueError(f"layout {layout!r}: expected 'scan' or 'vsepp'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, zlib.crc32(dataset.encode())])  # differ per data set
    word_vectors = rng.normal(0.0, 1.0, (len(NOUNS) + len(ATTRIBUTES), dim))
    split_sizes = {"train": n_train, "dev": n_dev, **PROTOCOL_SIZES[dataset], **(sizes or {})}
    all_captions = {}
    for split, n in split_sizes.items():
        feats, caps, sem = _split_arrays(n, regions, dim, rng, word_vectors)
        if layout == "vsepp":  # one global row per caption: the image's mean region + crop noise
            pooled = feats.mean(axis=1)                                    # (n, D)
            crops = rng.normal(0.0, 0.05, (n, CAPTIONS_PER_IMAGE, dim))
            feats = np.maximum(pooled[:, None, :] + crops, 0.0).reshape(-1, dim)  # (5n, D)
            feats = feats.astype(np.float32)
        np.save(folder / f"{split}_ims.npy", feats)
        atomic_write_text(folder / f"{split}_caps.txt", "\n".join(caps) + "\n")
        if semantics:
            atomic_write_text(folder / f"{split}_semantics.txt", "\n".join(sem) + "\n")
        all_captions[split] = caps
    return all_captions


def make_fixtures(out: str | Path, datasets: Sequence[str] = ("f30k_precomp", "coco_precomp"),
                  layout: str = "scan", **kwargs) -> Path:
    """Write ``OUT/data/{dataset}/`` for each data set and, in SCAN's layout,
    ``OUT/vocab/{dataset}_vocab.json`` (train + dev captions, words seen at least 4 times).
    Returns ``OUT/data``, the folder to pass as ``--data-root``."""
    out = Path(out)
    for dataset in datasets:
        caps = make_precomp_fixture(out / "data" / dataset, dataset, layout=layout, **kwargs)
        if layout == "scan":
            vocab = official_vocab_json(caps["train"] + caps["dev"])
            atomic_write_text(out / "vocab" / f"{dataset}_vocab.json", json.dumps(vocab))
    return out / "data"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xmrlib.data.fixtures OUT``: write the fixtures, print the data root."""
    p = argparse.ArgumentParser(prog="python -m xmrlib.data.fixtures",
                                description=__doc__.split("\n")[0])
    p.add_argument("out", help="folder to write (data/ and vocab/ go inside)")
    p.add_argument("--datasets", nargs="+", default=["f30k_precomp", "coco_precomp"],
                   choices=list(PROTOCOL_SIZES))
    p.add_argument("--layout", default="scan", choices=["scan", "vsepp"])
    p.add_argument("--n-train", type=int, default=120)
    p.add_argument("--n-dev", type=int, default=40)
    p.add_argument("--regions", type=int, default=4)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    root = make_fixtures(args.out, args.datasets, args.layout, n_train=args.n_train,
                         n_dev=args.n_dev, regions=args.regions, dim=args.dim, seed=args.seed)
    print(f"fixtures written; pass --data-root {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

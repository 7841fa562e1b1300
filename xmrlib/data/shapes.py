"""Shapes: the book's embedded image-text data set (no download).

Scenes of 2-4 objects on a 3x3 grid, each with one of 6 colours, one of 12 shapes and one of 3
sizes (colours and shapes distinct within a scene), on one of 3 backgrounds. Scenes come in
*binding groups* of 2-3 images: same shapes, sizes, positions and the same set of colours, but
colours bound to different shapes (colours shifted cyclically over the objects, so every object
changes colour). A model that pools everything into one vector sees the same bag of attributes
for every member of a group; region-word attention can tell them apart (SCAN, Lee et al. 2018,
ECCV).

Captions (:mod:`xmrlib.data.shapes_grammar`) name 2-4 objects of the scene, each by colour *and*
shape, with some of their sizes, places, relations, the number of objects and the background,
in 8-16 words of varied wording; :func:`caption_truth` says exactly which scenes a caption is
true of, and :func:`dataset_statistics` measures how specific the captions are.

Files written by :func:`make_shapes` (SCAN precomp layout plus extras), for each split:

* ``{split}_ims.npy`` float32 ``(N, R_max, D)``: region features, zero rows beyond ``nregions``;
* ``{split}_caps.txt``: 5 captions per image, image-major, UTF-8;
* ``{split}_nregions.npy`` int64 ``(N,)``; ``{split}_boxes.npy`` float32 ``(N, R_max, 4)``
  (``x0, y0, x1, y1`` fractions; background regions get the whole image);
* ``{split}_groups.npy`` int64 ``(N,)`` binding-group id; ``{split}_scenes.json``;
* ``{split}_semantics.txt``: one line per image, the regional semantics of a simulated detector,
  ``phrase:confidence`` items joined by ``|``, sorted by confidence descending, e.g.
  ``red circle:0.93|blue square:0.81`` (an empty line = nothing detected). Each object is missed
  with probability ``miss_rate``; its colour/shape is replaced by a similar one with probability
  ``confusion_rate`` each; a spurious detection is added with probability ``false_positive_rate``;
* ``images/{split}/{i:05d}.png`` and ``manifest.json``.

Region features (``features="sim"``) simulate a detector honestly: each object region is a fixed
random projection of the sum of random attribute embeddings (colour, shape, size, grid cell)
plus Gaussian noise and nuisance dimensions; 1-2 background regions encode the background colour.
So every fact a caption can state is in the features: the attributes and the grid cell of each
object region (hence every relation between two regions), the background in its regions, and
the number of objects in the number of object regions (``benchmarks/bench_shapes.py`` probes
each fact type linearly). With ``features="cnn"`` each region is instead the 1280-d globally
pooled head output of the pretrained EfficientNet-lite0 (:mod:`xmrlib.data.effnet`) on the crop
of the rendered image inside its box (background regions: the whole image), resized to
``CNN_CROP_SIZE`` pixels (lite preprocessing: RGB scaled to [-1, 1]); a crop shows little of
where its box is, so positions and relations are carried only by the boxes (``*_boxes.npy``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from xmrlib.data.shapes_grammar import (MAX_WORDS, MIN_WORDS, SHAPE_NAMES, SIZE_NAMES,
                                        caption_truth, facts_hold, make_captions, parse)
from xmrlib.utils import atomic_write_json, atomic_write_text

__all__ = ["COLOURS", "BACKGROUNDS", "SHAPES", "SIZES", "RELATIONS", "make_shapes",
           "make_scenes", "make_captions", "caption_is_true", "caption_truth", "render",
           "object_box", "shapes_manifest", "split_scenes", "split_captions",
           "caption_statistics", "dataset_statistics", "split_statistics", "folder_statistics",
           "statistics_markdown", "FACT_TYPES", "probe_data"]

#: Part of the manifest, hence of the cache key of :func:`xmrlib.data.get_dataset`: bump it
#: whenever the generated files change (scenes, grammar, features), or stale caches are reused.
GENERATOR_VERSION = "2.0"

#: Okabe-Ito colour-blind-safe colours, with plain names (name -> RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (213, 94, 0), "orange": (230, 159, 0), "yellow": (240, 228, 66),
    "green": (0, 158, 115), "blue": (86, 180, 233), "purple": (204, 121, 167),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250), "grey": (160, 160, 160), "black": (30, 30, 30),
}
SHAPES: tuple[str, ...] = SHAPE_NAMES
SIZES: tuple[str, ...] = SIZE_NAMES
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
GRID = 3
#: Half the side of an object's box, as a fraction of its grid cell, per size.
SIZE_SCALE = {"small": 0.24, "medium": 0.33, "large": 0.42}
#: Side in pixels of the region crops fed to EfficientNet-lite0 (``features="cnn"``).
CNN_CROP_SIZE = 112
#: Detector-style confusions between similar colours and shapes.
SIMILAR_COLOURS = {"red": "orange", "orange": "red", "yellow": "orange", "green": "blue",
                   "blue": "green", "purple": "red"}
SIMILAR_SHAPES = {"circle": "ring", "ring": "circle", "square": "diamond", "diamond": "square",
                  "triangle": "arrow", "arrow": "triangle", "star": "cross", "cross": "star",
                  "hexagon": "pentagon", "pentagon": "hexagon", "heart": "moon", "moon": "circle"}


# ----------------------------------------------------------------------------- scenes

def _base_scene(rng: np.random.Generator, k: int) -> dict[str, Any]:
    """A scene of ``k`` objects with distinct colours, shapes and grid cells."""
    cells = rng.choice(GRID * GRID, size=k, replace=False)
    colours = rng.choice(len(COLOURS), size=k, replace=False)
    shapes = rng.choice(len(SHAPES), size=k, replace=False)
    names = list(COLOURS)
    objects = [{"colour": names[c], "shape": SHAPES[s],
                "size": SIZES[int(rng.integers(len(SIZES)))],
                "row": int(cell // GRID), "col": int(cell % GRID)}
               for c, s, cell in zip(colours, shapes, cells)]
    return {"background": list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))],
            "objects": objects}


def _swap(scene: dict[str, Any], shift: int) -> dict[str, Any]:
    """The same scene with colours shifted cyclically by ``shift`` over the objects."""
    objs = scene["objects"]
    colours = [o["colour"] for o in objs]
    new = [dict(o, colour=colours[(i + shift) % len(objs)]) for i, o in enumerate(objs)]
    return {"background": scene["background"], "objects": new}


def make_scenes(rng: np.random.Generator, n: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` scenes in binding groups of 2-3 and their group ids ``(n,)``."""
    scenes: list[dict[str, Any]] = []
    groups: list[int] = []
    gid = 0
    while len(scenes) < n:
        left = n - len(scenes)
        g = left if left <= 3 else (2 if left == 4 else int(rng.integers(2, 4)))
        k = int(rng.integers(max(2, g), 5))
        base = _base_scene(rng, k)
        for m in range(g):
            scenes.append(_swap(base, m))
            groups.append(gid)
        gid += 1
    return scenes, np.asarray(groups, dtype=np.int64)


# ----------------------------------------------------------------------------- captions

def caption_is_true(caption: str, scene: dict[str, Any]) -> bool:
    """Parse ``caption`` with the Shapes grammar (:mod:`xmrlib.data.shapes_grammar`) and check
    it against ``scene``. Raises ``ValueError`` for a caption outside the grammar."""
    return facts_hold(parse(caption), scene)


# ----------------------------------------------------------------------------- rendering

def object_box(obj: dict[str, Any], jitter: tuple[float, float] = (0.0, 0.0)) -> list[float]:
    """Box ``x0, y0, x1, y1`` (fractions of the image) of an object in its grid cell."""
    cell = 1.0 / GRID
    half = cell * SIZE_SCALE[obj["size"]]
    cx = (obj["col"] + 0.5) * cell + jitter[0]
    cy = (obj["row"] + 0.5) * cell + jitter[1]
    return [cx - half, cy - half, cx + half, cy + half]


def _regular(cx: float, cy: float, r: float, n: int, inner: float = 1.0
             ) -> list[tuple[float, float]]:
    """Vertices of a regular ``n``-gon (``inner < 1``: a star alternating radii ``r``, ``inner r``),
    the first one at the top."""
    ang = -np.pi / 2 + np.arange(n) * 2 * np.pi / n
    rad = np.where(np.arange(n) % 2 == 0, r, inner * r)
    return list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang)))


def _polygon(shape: str, box: list[float]) -> list[tuple[float, float]] | None:
    """The outline of ``shape`` inside ``box`` (None for the shapes drawn as ellipses)."""
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    t = r / 3                                                   # arm half-width (cross, arrow)
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "square":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if shape == "star":
        return _regular(cx, cy, r, 10, inner=0.45)
    if shape == "pentagon":
        return _regular(cx, cy, r, 5)
    if shape == "hexagon":
        return _regular(cx, cy, r, 6)
    if shape == "cross":
        return [(cx - t, y0), (cx + t, y0), (cx + t, cy - t), (x1, cy - t), (x1, cy + t),
                (cx + t, cy + t), (cx + t, y1), (cx - t, y1), (cx - t, cy + t), (x0, cy + t),
                (x0, cy - t), (cx - t, cy - t)]
    if shape == "arrow":                                        # pointing right
        return [(x0, cy - t), (cx, cy - t), (cx, y0 + r / 4), (x1, cy), (cx, y1 - r / 4),
                (cx, cy + t), (x0, cy + t)]
    if shape == "heart":                                        # the classic parametric heart
        u = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        hx, hy = 16 * np.sin(u) ** 3, -(13 * np.cos(u) - 5 * np.cos(2 * u)
                                         - 2 * np.cos(3 * u) - np.cos(4 * u))
        hy = hy + 2.5                                           # centre it vertically
        return list(zip(cx + r * hx / 17, cy + r * hy / 17))
    if shape == "moon":                 # a disc minus a disc shifted right: two arcs
        d, rho = 0.5 * r, 0.8 * r
        ix = (r * r - rho * rho + d * d) / (2 * d)               # where the circles cross
        iy = np.sqrt(r * r - ix * ix)
        outer = np.linspace(np.arctan2(iy, ix), 2 * np.pi - np.arctan2(iy, ix), 24)
        inner = np.linspace(2 * np.pi - np.arctan2(iy, ix - d), np.arctan2(iy, ix - d), 24)
        return (list(zip(cx + r * np.cos(outer), cy - r * np.sin(outer)))
                + list(zip(cx + d + rho * np.cos(inner), cy - rho * np.sin(inner))))
    return None


def render(scene: dict[str, Any], image_size: int = 112, supersample: int = 2):
    """Render a scene to a Pillow RGB image (drawn at ``supersample`` x, then downsampled)."""
    from PIL import Image, ImageDraw

    s = image_size * supersample
    background = BACKGROUNDS[scene["background"]]
    img = Image.new("RGB", (s, s), background)
    draw = ImageDraw.Draw(img)
    outline = (0, 0, 0) if scene["background"] != "black" else (255, 255, 255)
    for obj in scene["objects"]:
        box = [v * s for v in obj["box"]]
        colour = COLOURS[obj["colour"]]
        if obj["shape"] in ("circle", "ring"):
            draw.ellipse(box, fill=colour, outline=outline, width=supersample)
            if obj["shape"] == "ring":                          # punch the hole
                x0, y0, x1, y1 = box
                d = 0.3 * (x1 - x0)
                draw.ellipse([x0 + d, y0 + d, x1 - d, y1 - d], fill=background, outline=outline,
                             width=supersample)
        else:
            draw.polygon(_polygon(obj["shape"], box), fill=colour, outline=outline,
                         width=supersample)
    return img.resize((image_size, image_size), Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- features

def _sim_features(scenes: list[dict[str, Any]], bg_counts: np.ndarray, emb: dict[str, np.ndarray],
                  proj: np.ndarray, r_max: int, noise: float, rng: np.random.Generator
                  ) -> np.ndarray:
    """Simulated detector features ``(N, r_max, D)``; rows beyond the valid regions are zero."""
    n, d = len(scenes), proj.shape[1]
    latent = np.zeros((n, r_max, proj.shape[0]), dtype=np.float64)
    valid = np.zeros((n, r_max), dtype=bool)
    for i, sc in enumerate(scenes):
        for r, o in enumerate(sc["objects"]):
            latent[i, r] = (emb["colour"][list(COLOURS).index(o["colour"])]
                            + emb["shape"][SHAPES.index(o["shape"])]
                            + emb["size"][SIZES.index(o["size"])]
                            + emb["cell"][o["row"] * GRID + o["col"]])
        k = len(sc["objects"])
        for r in range(k, k + int(bg_counts[i])):
            latent[i, r] = emb["background"][list(BACKGROUNDS).index(sc["background"])]
        valid[i, : k + int(bg_counts[i])] = True
    latent += noise * rng.standard_normal(latent.shape)
    feats = latent @ proj                                     # (N, R, A) @ (A, D) -> (N, R, D)
    feats += 0.5 * noise * rng.standard_normal(feats.shape)   # nuisance variation in every dim
    feats *= valid[..., None]
    return feats.astype(np.float32)


def _cnn_features(images: list[Any], boxes: np.ndarray, nreg: np.ndarray, model: Any
                  ) -> np.ndarray:
    """EfficientNet-lite0 region features ``(N, R_max, 1280)``; rows beyond ``nreg`` are zero."""
    from xmrlib.data.effnet import FEATURE_DIM, region_features

    n, r_max = boxes.shape[:2]
    flat = region_features(images, [boxes[i, : nreg[i]] for i in range(n)], model=model,
                           crop_size=CNN_CROP_SIZE, batch_size=64)     # (sum nreg, 1280)
    out = np.zeros((n, r_max, FEATURE_DIM), dtype=np.float32)
    valid = np.arange(r_max)[None, :] < nreg[:, None]                 # (N, R_max)
    out[valid] = flat                                                 # row-major = image, box order
    return out


def _semantics_line(scene: dict[str, Any], rng: np.random.Generator, miss: float,
                    confusion: float, false_pos: float) -> str:
    dets: list[tuple[str, float]] = []
    for o in scene["objects"]:
        if rng.random() < miss:
            continue
        colour, shape, conf = o["colour"], o["shape"], rng.uniform(0.6, 0.99)
        if rng.random() < confusion:
            colour, conf = SIMILAR_COLOURS[colour], rng.uniform(0.3, 0.7)
        if rng.random() < confusion:
            shape, conf = SIMILAR_SHAPES[shape], rng.uniform(0.3, 0.7)
        dets.append((f"{colour} {shape}", float(conf)))
    if rng.random() < false_pos:
        dets.append((f"{list(COLOURS)[int(rng.integers(len(COLOURS)))]} "
                     f"{SHAPES[int(rng.integers(len(SHAPES)))]}", float(rng.uniform(0.2, 0.5))))
    dets.sort(key=lambda t: -t[1])
    return "|".join(f"{p}:{c:.2f}" for p, c in dets)


# ----------------------------------------------------------------------------- statistics

#: Closed-class words counted as function words by :func:`caption_statistics`.
FUNCTION_WORDS = frozenset(
    "a an the of on in at to and with is are there this that which it its as by from for "
    "up down all also be can".split())


def caption_statistics(captions: list[str], min_count: int = 4) -> dict[str, float]:
    """Length and vocabulary of any captions (Shapes or real): mean/min/max length in words of
    :func:`xmrlib.vocab.tokenize`, distinct words, words seen at least ``min_count`` times (the
    vsepp/SCAN vocabulary threshold) and the share of function words (percent)."""
    from collections import Counter

    from xmrlib.vocab import tokenize

    tokens = [tokenize(c) for c in captions]
    lengths = np.array([len(t) for t in tokens])
    counts = Counter(w for t in tokens for w in t)
    n_words = max(1, int(lengths.sum()))
    return {"caption_words_mean": float(lengths.mean()), "caption_words_min": int(lengths.min()),
            "caption_words_max": int(lengths.max()), "vocabulary": len(counts),
            f"vocabulary_min{min_count}": sum(n >= min_count for n in counts.values()),
            "function_word_share": 100.0 * sum(counts[w] for w in FUNCTION_WORDS) / n_words}


def dataset_statistics(scenes: list[dict[str, Any]], groups: np.ndarray, captions: list[str],
                       train_captions: list[str] | None = None,
                       captions_per_image: int = 5) -> dict[str, float]:
    """How specific the captions of a split are, measured with the exact truth oracle: images
    per caption (mean over captions of the images it is true of), share of captions true of
    their image only, the oracle's expected recalls (:func:`xmrlib.evaluation.oracle_recall`),
    the binding ceiling (:func:`xmrlib.evaluation.binding_ceiling`); plus
    :func:`caption_statistics` of ``train_captions`` (default: ``captions``)."""
    from xmrlib.evaluation import binding_ceiling, oracle_recall

    truth = caption_truth(scenes, captions)                 # (N, 5N)
    per_caption = truth.sum(axis=0)
    oracle = oracle_recall(truth, captions_per_image)
    return {"images": len(scenes), "images_per_caption": float(per_caption.mean()),
            "single_image_captions": 100.0 * float((per_caption == 1).mean()),
            **{f"oracle_{k}": v for k, v in oracle.items()},
            "binding_ceiling": binding_ceiling(captions, groups, captions_per_image),
            **caption_statistics(train_captions if train_captions is not None else captions)}


def split_statistics(n_test: int = 1000, n_train: int = 5000, seed: int = 0
                     ) -> dict[str, float]:
    """:func:`dataset_statistics` of the test split of ``make_shapes(..., n_train, ..., n_test,
    seed=seed)``, the language measured on its train split, regenerated without features or
    images (a few seconds)."""
    scenes, groups = split_scenes(n_test, seed, "test")
    train_scenes, _ = split_scenes(n_train, seed, "train")
    return dataset_statistics(scenes, groups, split_captions(scenes, seed, "test"),
                              split_captions(train_scenes, seed, "train"))


def folder_statistics(root: str | Path, split: str = "test") -> dict[str, float]:
    """:func:`dataset_statistics` of a Shapes folder written by :func:`make_shapes` (the
    language measured on its train captions)."""
    root = Path(root)

    def lines(name: str) -> list[str]:
        return (root / name).read_text(encoding="utf-8").splitlines()

    scenes = json.loads((root / f"{split}_scenes.json").read_text(encoding="utf-8"))
    return dataset_statistics(scenes, np.load(root / f"{split}_groups.npy"),
                              lines(f"{split}_caps.txt"), lines("train_caps.txt"))


def statistics_markdown(stats: dict[str, float]) -> str:
    """The statistics of :func:`dataset_statistics` as the Markdown table of the datasets page,
    next to what is known of Flickr30K and MS-COCO (the page gives the sources)."""
    unchecked = "not checked here"
    rows = [
        ("images a test caption is true of (mean)", f"{stats['images_per_caption']:.2f}",
         "1 annotated", "1 annotated; about 8.5 after re-annotation (ECCV Caption)"),
        ("test captions true of their own image only", f"{stats['single_image_captions']:.1f}%",
         "-", "-"),
        ("truth oracle, expected text-to-image R@1", f"{stats['oracle_t2i_r1']:.1f}",
         "no truth oracle", "no truth oracle"),
        ("truth oracle, expected rsum", f"{stats['oracle_rsum']:.1f}", "-", "-"),
        ("binding ceiling", f"{stats['binding_ceiling']:.3f}", "no binding groups",
         "no binding groups"),
        ("caption length in words: mean (min-max)",
         f"{stats['caption_words_mean']:.2f} ({stats['caption_words_min']}-"
         f"{stats['caption_words_max']})", unchecked,
         f"about 10.5, often quoted; {unchecked}"),
        ("vocabulary of the training captions (words seen 4+ times)",
         f"{stats['vocabulary']} ({stats['vocabulary_min4']})", unchecked, unchecked),
        ("function words, share of all words", f"{stats['function_word_share']:.1f}%",
         unchecked, unchecked),
    ]
    lines = [f"| statistic | Shapes, this build ({stats['images']} test images) | Flickr30K "
             "| MS-COCO |", "| --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- probes

#: The fact types a caption can state, each probed from region features by :func:`probe_data`.
FACT_TYPES = ("colour", "shape", "size", "position", "relation", "count", "background")


def probe_data(images: np.ndarray, n_regions: np.ndarray, scenes: list[dict[str, Any]],
               fact: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, D')`` and labels ``(n,)`` of a linear probe for one fact type.

    * colour, shape, size, position (grid cell): one example per object region, its feature;
    * relation: one example per ordered pair of objects of a scene, the two region features
      concatenated ``(n, 2D)``, labelled by the horizontal and vertical order of their cells
      (left/same/right x above/same/below: "left of", "above" and their converses);
    * count, background: one example per image, the sum of its region features.
    """
    if fact not in FACT_TYPES:
        raise ValueError(f"unknown fact type {fact!r}: expected one of {FACT_TYPES}")
    x: list[np.ndarray] = []
    y: list[Any] = []
    for i, sc in enumerate(scenes):
        objs = sc["objects"]
        if fact in ("count", "background"):
            x.append(images[i, : n_regions[i]].sum(axis=0))
            y.append(len(objs) if fact == "count" else sc["background"])
        elif fact == "relation":
            for a, b in ((a, b) for a in range(len(objs)) for b in range(len(objs)) if a != b):
                x.append(np.concatenate([images[i, a], images[i, b]]))
                y.append(f"{np.sign(objs[a]['col'] - objs[b]['col'])},"
                         f"{np.sign(objs[a]['row'] - objs[b]['row'])}")
        else:
            for r, o in enumerate(objs):               # object regions come first
                x.append(images[i, r])
                y.append(o["row"] * GRID + o["col"] if fact == "position" else o[fact])
    return np.stack(x).astype(np.float32), np.asarray(y)


# ----------------------------------------------------------------------------- writer

SPLITS = ("train", "dev", "test")
#: Independent random streams of a split, so that scenes and captions can be regenerated
#: without features or images (:func:`split_scenes`, :func:`split_captions`).
STREAMS = ("scenes", "features", "captions", "semantics")


def _stream(seed: int, split: str, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), STREAMS.index(stream)])


def split_scenes(n: int, seed: int, split: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The ``n`` scenes (objects with their jittered boxes) and group ids of a split, exactly
    as :func:`make_shapes` writes them for the same ``seed``."""
    rng = _stream(seed, split, "scenes")
    scenes, groups = make_scenes(rng, n)
    for sc in scenes:
        for o in sc["objects"]:
            o["box"] = [round(v, 4) for v in object_box(o, tuple(rng.uniform(-0.02, 0.02, 2)))]
    return scenes, groups


def split_captions(scenes: list[dict[str, Any]], seed: int, split: str) -> list[str]:
    """The five captions per scene of a split (image-major), as :func:`make_shapes` writes
    them for the same ``seed``."""
    rng = _stream(seed, split, "captions")
    return [c for sc in scenes for c in make_captions(sc, rng)]


def make_shapes(root: str | Path, n_train: int, n_dev: int, n_test: int, seed: int = 0,
                features: str = "sim", image_size: int = 112, dim: int = 128,
                latent_dim: int = 64, noise: float = 0.1, max_background: int = 2,
                miss_rate: float = 0.1, confusion_rate: float = 0.1,
                false_positive_rate: float = 0.15, device: str = "auto") -> Path:
    """Generate the Shapes data set into ``root`` (SCAN precomp layout plus extras); return it.

    ``features``: ``"sim"`` (simulated detector, ``dim``-d) or ``"cnn"`` (EfficientNet-lite0 on
    the rendered crops, 1280-d, computed on ``device``). Deterministic: the same arguments give
    byte-identical files (``"cnn"`` on the same device type).
    """
    if features not in ("sim", "cnn"):
        raise ValueError(f"features={features!r}: expected 'sim' or 'cnn'")
    from PIL import Image  # noqa: F401  (fail early if Pillow is missing)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    emb = {"colour": rng.standard_normal((len(COLOURS), latent_dim)),
           "shape": rng.standard_normal((len(SHAPES), latent_dim)),
           "size": 0.7 * rng.standard_normal((len(SIZES), latent_dim)),
           "cell": 0.7 * rng.standard_normal((GRID * GRID, latent_dim)),
           "background": rng.standard_normal((len(BACKGROUNDS), latent_dim))}
    proj = rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
    r_max = 4 + max_background
    model = None
    if features == "cnn":
        from xmrlib.data.effnet import load_efficientnet_lite0

        model = load_efficientnet_lite0(device)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        scenes, groups = split_scenes(n, seed, split)
        srng = _stream(seed, split, "features")
        bg_counts = srng.integers(1, max_background + 1, size=n)
        nreg = np.array([len(s["objects"]) for s in scenes], dtype=np.int64) + bg_counts
        boxes = np.zeros((n, r_max, 4), dtype=np.float32)
        for i, sc in enumerate(scenes):
            k = len(sc["objects"])
            boxes[i, :k] = [o["box"] for o in sc["objects"]]
            boxes[i, k:nreg[i]] = [0.0, 0.0, 1.0, 1.0]
        # sim features are drawn in both modes so that scenes, captions and semantics coincide
        ims = _sim_features(scenes, bg_counts, emb, proj, r_max, noise, srng)
        images = None
        if model is not None:
            images = [render(sc, image_size) for sc in scenes]
            ims = _cnn_features(images, boxes, nreg, model)
        caps = split_captions(scenes, seed, split)
        sem_rng = _stream(seed, split, "semantics")
        sem = [_semantics_line(sc, sem_rng, miss_rate, confusion_rate, false_positive_rate)
               for sc in scenes]
        np.save(root / f"{split}_ims.npy", ims)
        np.save(root / f"{split}_nregions.npy", nreg)
        np.save(root / f"{split}_boxes.npy", boxes)
        np.save(root / f"{split}_groups.npy", groups)
        atomic_write_text(root / f"{split}_caps.txt", "\n".join(caps) + "\n")
        atomic_write_text(root / f"{split}_semantics.txt", "\n".join(sem) + "\n")
        atomic_write_json(root / f"{split}_scenes.json", scenes)
        img_dir = root / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        for i, sc in enumerate(scenes):
            im = images[i] if images is not None else render(sc, image_size)
            im.save(img_dir / f"{i:05d}.png", optimize=False)
    atomic_write_json(root / "manifest.json", shapes_manifest(
        n_train, n_dev, n_test, seed, features, image_size, dim, latent_dim, noise,
        max_background, miss_rate, confusion_rate, false_positive_rate))
    return root


def shapes_manifest(n_train: int, n_dev: int, n_test: int, seed: int, features: str,
                    image_size: int, dim: int, latent_dim: int, noise: float, max_background: int,
                    miss_rate: float, confusion_rate: float, false_positive_rate: float
                    ) -> dict[str, Any]:
    """The manifest of a Shapes folder (also the cache key of :func:`xmrlib.data.get_dataset`)."""
    return {"generator": "xmrlib.data.shapes", "version": GENERATOR_VERSION, "seed": seed,
            "sizes": {"train": n_train, "dev": n_dev, "test": n_test}, "features": features,
            "image_size": image_size, "dim": 1280 if features == "cnn" else dim,
            "latent_dim": latent_dim, "noise": noise,
            "max_regions": 4 + max_background, "captions_per_image": 5,
            "palette": {k: list(v) for k, v in COLOURS.items()},
            "backgrounds": {k: list(v) for k, v in BACKGROUNDS.items()},
            "attributes": {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES),
                           "relation": list(RELATIONS), "grid": GRID},
            "captions": {"grammar": "xmrlib.data.shapes_grammar", "words": [MIN_WORDS, MAX_WORDS]},
            "semantics_noise": {"miss_rate": miss_rate, "confusion_rate": confusion_rate,
                                "false_positive_rate": false_positive_rate},
            **({"cnn": {"model": "efficientnet-lite0 (ImageNet, packaged weights)",
                        "crop_size": CNN_CROP_SIZE, "pooling": "global average after head",
                        "input_scaling": "[-1, 1] (mean 0.5, std 0.5)"}}
               if features == "cnn" else {})}

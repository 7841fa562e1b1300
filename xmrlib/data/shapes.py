"""Shapes: the book's embedded image-text data set (no download).

Scenes of 2-4 objects on a 3x3 grid, each with a colour, a shape and a size, on a background.
Scenes come in *binding groups* of 2-3 images: same shapes, sizes, positions and the same set of
colours, but colours bound to different shapes (colours shifted cyclically over the objects).
A model that pools everything into one vector sees the same bag of attributes for every member
of a group; region-word attention can tell them apart (SCAN, Lee et al. 2018, ECCV).

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
With ``features="cnn"`` each region is instead the 1280-d globally pooled head output of the
pretrained EfficientNet-lite0 (:mod:`xmrlib.data.effnet`) on the crop of the rendered image inside
its box (background regions: the whole image), resized to ``CNN_CROP_SIZE`` pixels (lite preprocessing: RGB scaled to [-1, 1]).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from xmrlib.utils import atomic_write_json, atomic_write_text

GENERATOR_VERSION = "1.0"

#: Okabe-Ito colour-blind-safe colours, with plain names (name -> RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (213, 94, 0), "orange": (230, 159, 0), "yellow": (240, 228, 66),
    "green": (0, 158, 115), "blue": (86, 180, 233), "purple": (204, 121, 167),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250), "grey": (160, 160, 160), "black": (30, 30, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
NUMBERS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
GRID = 3
#: Side in pixels of the region crops fed to EfficientNet-lite0 (``features="cnn"``).
CNN_CROP_SIZE = 112
#: Detector-style confusions between similar colours and shapes.
SIMILAR_COLOURS = {"red": "orange", "orange": "red", "yellow": "orange", "green": "blue",
                   "blue": "green", "purple": "red"}
SIMILAR_SHAPES = {"circle": "diamond", "square": "diamond", "triangle": "star",
                  "star": "triangle", "diamond": "square"}


# ----------------------------------------------------------------------------- scenes

def _base_scene(rng: np.random.Generator, k: int) -> dict[str, Any]:
    """A scene of ``k`` objects with distinct colours, shapes and grid cells."""
    cells = rng.choice(GRID * GRID, size=k, replace=False)
    colours = rng.choice(len(COLOURS), size=k, replace=False)
    shapes = rng.choice(len(SHAPES), size=k, replace=False)
    names = list(COLOURS)
    objects = [{"colour": names[c], "shape": SHAPES[s], "size": SIZES[int(rng.integers(2))],
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

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(obj: dict[str, Any], with_size: bool) -> str:
    words = ([obj["size"]] if with_size else []) + [obj["colour"], obj["shape"]]
    return f"{_article(words[0])} {' '.join(words)}"


def _relation(a: dict[str, Any], b: dict[str, Any], rng: np.random.Generator) -> str | None:
    """A relation that holds between objects ``a`` and ``b`` (None if they share the cell)."""
    options = []
    if a["col"] < b["col"]:
        options.append("left of")
    if a["col"] > b["col"]:
        options.append("right of")
    if a["row"] < b["row"]:
        options.append("above")
    if a["row"] > b["row"]:
        options.append("below")
    return options[int(rng.integers(len(options)))] if options else None


def make_captions(scene: dict[str, Any], rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` different captions of ``scene``: relations (bindings), bindings, counts."""
    objs, bg = scene["objects"], scene["background"]
    k = len(objs)
    relations, others = [], []
    for i in range(k):
        for j in range(k):
            if i != j:
                rel = _relation(objs[i], objs[j], rng)
                if rel:
                    sz = bool(rng.integers(2))
                    relations.append(f"{_phrase(objs[i], sz)} {rel} {_phrase(objs[j], sz)}")
    for o in objs:
        others.append(f"the {o['shape']} is {o['colour']}")
        others.append(f"{_phrase(o, bool(rng.integers(2)))} on a {bg} background")
    i, j = rng.choice(k, size=2, replace=False)
    others.append(f"{_phrase(objs[i], False)} and {_phrase(objs[j], False)}")
    count = f"{NUMBERS[k]} shapes on a {bg} background"
    rel_pick = [relations[t] for t in rng.permutation(len(relations))[:2]]
    rest = [others[t] for t in rng.permutation(len(others))]
    caps: list[str] = []
    for c in rel_pick + [count] + rest + relations:
        if c not in caps:
            caps.append(c)
        if len(caps) == n:
            break
    order = rng.permutation(len(caps))
    return [caps[t] for t in order]


_OBJ = r"an? (?:(small|large) )?(\w+) (\w+)"
_PATTERNS = [
    ("relation", re.compile(rf"^{_OBJ} (left of|right of|above|below) {_OBJ}$")),
    ("count", re.compile(r"^(\w+) shapes on an? (\w+) background$")),
    ("is", re.compile(r"^the (\w+) is (\w+)$")),
    ("on", re.compile(rf"^{_OBJ} on an? (\w+) background$")),
    ("and", re.compile(rf"^{_OBJ} and {_OBJ}$")),
]


def _matches(obj: dict[str, Any], size: str | None, colour: str, shape: str) -> bool:
    return (obj["colour"] == colour and obj["shape"] == shape
            and (size is None or obj["size"] == size))


def _holds(rel: str, a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {"left of": a["col"] < b["col"], "right of": a["col"] > b["col"],
            "above": a["row"] < b["row"], "below": a["row"] > b["row"]}[rel]


def _parse(caption: str) -> tuple[str, tuple[str | None, ...]]:
    """The grammar rule and the captured words of ``caption`` (ValueError outside the grammar)."""
    for kind, pattern in _PATTERNS:
        m = pattern.match(caption)
        if m:
            return kind, m.groups()
    raise ValueError(f"caption outside the Shapes grammar: {caption!r}")


def _is_true(kind: str, g: tuple[str | None, ...], scene: dict[str, Any]) -> bool:
    objs, bg = scene["objects"], scene["background"]
    if kind == "relation":
        return any(_matches(a, *g[0:3]) and _matches(b, *g[4:7]) and _holds(g[3], a, b)
                   for a in objs for b in objs if a is not b)
    if kind == "count":
        return g[0] in NUMBERS and NUMBERS.index(g[0]) == len(objs) and g[1] == bg
    if kind == "is":
        return any(o["shape"] == g[0] and o["colour"] == g[1] for o in objs)
    if kind == "on":
        return g[3] == bg and any(_matches(o, *g[0:3]) for o in objs)
    return any(_matches(a, *g[0:3]) and _matches(b, *g[3:6])
               for a in objs for b in objs if a is not b)


def caption_is_true(caption: str, scene: dict[str, Any]) -> bool:
    """Parse ``caption`` with the Shapes grammar and check it against ``scene``.

    Raises ``ValueError`` for a caption outside the grammar.
    """
    return _is_true(*_parse(caption), scene)


def caption_truth(scenes: list[dict[str, Any]], captions: list[str]) -> np.ndarray:
    """Boolean ``(n_scenes, n_captions)`` matrix: is caption ``j`` true of scene ``i``?

    The ground truth behind the ambiguity of Shapes captions ("the circle is red" is true of
    many scenes); :func:`xmrlib.evaluation.oracle_recall` turns it into a recall ceiling.
    """
    parsed = [_parse(c) for c in captions]
    return np.array([[_is_true(kind, g, sc) for kind, g in parsed] for sc in scenes], dtype=bool)


# ----------------------------------------------------------------------------- rendering

def object_box(obj: dict[str, Any], jitter: tuple[float, float] = (0.0, 0.0)) -> list[float]:
    """Box ``x0, y0, x1, y1`` (fractions of the image) of an object in its grid cell."""
    cell = 1.0 / GRID
    half = cell * (0.42 if obj["size"] == "large" else 0.26)
    cx = (obj["col"] + 0.5) * cell + jitter[0]
    cy = (obj["row"] + 0.5) * cell + jitter[1]
    return [cx - half, cy - half, cx + half, cy + half]


def _polygon(shape: str, box: list[float]) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if shape == "star":
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang)))
    return None


def render(scene: dict[str, Any], image_size: int = 112, supersample: int = 2):
    """Render a scene to a Pillow RGB image (drawn at ``supersample`` x, then downsampled)."""
    from PIL import Image, ImageDraw

    s = image_size * supersample
    img = Image.new("RGB", (s, s), BACKGROUNDS[scene["background"]])
    draw = ImageDraw.Draw(img)
    for obj in scene["objects"]:
        box = [v * s for v in obj["box"]]
        colour = COLOURS[obj["colour"]]
        outline = (0, 0, 0) if scene["background"] != "black" else (255, 255, 255)
        poly = _polygon(obj["shape"], box)
        if obj["shape"] == "circle":
            draw.ellipse(box, fill=colour, outline=outline, width=supersample)
        elif obj["shape"] == "square":
            draw.rectangle(box, fill=colour, outline=outline, width=supersample)
        else:
            draw.polygon(poly, fill=colour, outline=outline, width=supersample)
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


# ----------------------------------------------------------------------------- writer

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
        srng = np.random.default_rng([seed, ("train", "dev", "test").index(split)])
        scenes, groups = make_scenes(srng, n)
        for sc in scenes:
            for o in sc["objects"]:
                o["box"] = [round(v, 4) for v in object_box(o, tuple(srng.uniform(-0.02, 0.02, 2)))]
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
        caps = [c for sc in scenes for c in make_captions(sc, srng)]
        sem = [_semantics_line(sc, srng, miss_rate, confusion_rate, false_positive_rate)
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
            "semantics_noise": {"miss_rate": miss_rate, "confusion_rate": confusion_rate,
                                "false_positive_rate": false_positive_rate},
            **({"cnn": {"model": "efficientnet-lite0 (ImageNet, packaged weights)",
                        "crop_size": CNN_CROP_SIZE, "pooling": "global average after head",
                        "input_scaling": "[-1, 1] (mean 0.5, std 0.5)"}}
               if features == "cnn" else {})}

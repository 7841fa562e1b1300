"""Reading SCAN's precomputed-feature layout (``f30k_precomp`` / ``coco_precomp``) and Shapes.

Follows the data layout of the SCAN reference code (kuanghuei/SCAN, ``data.py``): features
``{split}_ims.npy`` (N, R, D) or (N, D), captions ``{split}_caps.txt`` 5 per image, image-major;
when features are stored once per caption (N_ims == N_caps) ``im_div`` is 5; dev is truncated to
5000 captions (1000 images). Every malformed input raises :class:`DataError` naming the file:
features must be floating point, finite (checked on a sample of rows at load time) and of rank
2 or 3. Features stored once per caption (vsepp's 10-crop files) keep every row: training pairs
caption ``j`` with row ``j`` (``PrecompData.caption_images``) as vsepp does, and ``images``
holds row ``5i`` of each image, the row vsepp's evaluation uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

REAL_DATASETS = ("f30k_precomp", "coco_precomp")
REAL_DATA_HELP = ("Real features come from SCAN's precomputed-feature release (bottom-up "
                  "attention regions, the f30k_precomp / coco_precomp folders); see the book's "
                  "real-data guide page for where to get them and the expected layout.")
#: Separator of the entries of a semantics line, and the format every message states.
SEMANTICS_SEPARATOR = "|"
SEMANTICS_FORMAT = ("one line per image, in the order of {split}_ims.npy, its regional semantics "
                    "as 'phrase:confidence' entries joined by '|', sorted by confidence, "
                    "descending, confidence in [0, 1], e.g. 'blue car:0.93|white building:0.88'; "
                    "an empty line means nothing detected")
#: Rows read to check that features are finite (evenly spaced, first and last included).
FINITE_SAMPLE_ROWS = 32


class DataError(ValueError):
    """A data file is missing or malformed (the message names the file and what was expected)."""


@dataclass
class PrecompData:
    """One split of a precomp folder (see CONTRIBUTING.md, "Data contract")."""

    root: Path
    split: str
    images: np.ndarray
    captions: list[str]
    captions_per_image: int = 5
    n_regions: np.ndarray | None = None
    boxes: np.ndarray | None = None
    groups: np.ndarray | None = None
    scenes: list[dict] | None = None
    semantics: list[list[tuple[str, float]]] | None = None
    image_paths: list[Path] | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    caption_images: np.ndarray | None = None   # (5N, R, D) / (5N, D): one row per caption
    fingerprint: str = ""                      # content of the split's files (data.fingerprint)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def first_images(data: PrecompData, n: int | None) -> PrecompData:
    """The first ``n`` images of a split with their captions and extras (the split for None).

    The cut is recorded in the manifest (``first_images``), which enters the identity of a
    training run with the split's content fingerprint, so the same cut of the same data finds
    the same run folder wherever the data lies.
    """
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise ValueError(f"first_images: n must be a positive number of images, got {n}")
    k = data.captions_per_image

    def head(x: Any) -> Any:
        return None if x is None else x[:n]

    return replace(data, images=data.images[:n], captions=data.captions[:k * n],
                   n_regions=head(data.n_regions), boxes=head(data.boxes),
                   groups=head(data.groups), scenes=head(data.scenes),
                   semantics=head(data.semantics), image_paths=head(data.image_paths),
                   caption_images=(None if data.caption_images is None
                                   else data.caption_images[:k * n]),
                   manifest={**data.manifest, "first_images": n})


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array (truncated or corrupt?): {e}") from e


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}, line {i}: not valid UTF-8 ({e.reason})") from e
    return out


def parse_semantics_line(line: str, path: Path, lineno: int) -> list[tuple[str, float]]:
    """Parse one line of ``{split}_semantics.txt`` (:data:`SEMANTICS_FORMAT`): entries
    ``phrase:confidence`` joined by ``|``, sorted by confidence; an empty line = no detection.
    A line that breaks the format is a :class:`DataError` naming the file and the line."""
    if "\t" in line:
        split = Path(path).name.rsplit("_semantics", 1)[0]
        raise DataError(f"{path}, line {lineno}: found a tab; expected "
                        f"{SEMANTICS_FORMAT.replace('{split}', split)}")
    items: list[tuple[str, float]] = []
    for part in line.split(SEMANTICS_SEPARATOR) if line.strip() else []:
        phrase, sep, conf = part.rpartition(":")
        try:
            value = float(conf)
        except ValueError:
            value = float("nan")
        if not sep or not phrase.strip() or not 0.0 <= value <= 1.0:
            raise DataError(f"{path}, line {lineno}: expected 'phrase:confidence' items joined "
                            f"by '|' with confidence in [0, 1], got {part!r}")
        items.append((phrase.strip(), value))
    if any(a[1] < b[1] for a, b in zip(items, items[1:])):
        raise DataError(f"{path}, line {lineno}: items must be sorted by confidence, descending")
    return items


def check_features(images: np.ndarray, path: Path) -> None:
    """Features must be floating point and finite: checks the dtype, then reads
    :data:`FINITE_SAMPLE_ROWS` evenly spaced rows (cheap on a memory map) for NaN or inf."""
    if images.dtype.kind != "f":
        raise DataError(f"{path}: features of dtype {images.dtype}, expected floating point "
                        "(float32 as SCAN's and vsepp's files; float16/float64 are converted)")
    n = images.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, FINITE_SAMPLE_ROWS)).astype(np.int64))
    for r in rows:
        if not np.isfinite(np.asarray(images[r])).all():
            raise DataError(f"{path}: row {r} holds NaN or infinite values; expected finite "
                            "features (a failed extraction or a corrupt file?)")


def load_precomp(root: str | Path, split: str, max_dev_captions: int | None = 5000,
                 mmap: bool = True, captions_per_image: int = 5) -> PrecompData:
    """Load ``split`` of a precomp folder, with the Shapes extras when present.

    ``max_dev_captions`` truncates the dev split like the reference code (None: keep all).
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}. {REAL_DATA_HELP}")
    ims_path, caps_path = root / f"{split}_ims.npy", root / f"{split}_caps.txt"
    images = _load_npy(ims_path, mmap)
    if images.ndim not in (2, 3):
        raise DataError(f"{ims_path}: expected rank 2 (N, D) or 3 (N, R, D), "
                        f"got shape {images.shape}")
    captions = _read_lines(caps_path)
    for i, c in enumerate(captions, start=1):
        if not c.strip():
            raise DataError(f"{caps_path}, line {i}: empty caption")
    cpi = captions_per_image
    if len(captions) % cpi:
        raise DataError(f"{caps_path}: {len(captions)} captions, expected a multiple of {cpi}")
    check_features(images, ims_path)
    n_img = len(captions) // cpi
    per_caption = None
    if images.shape[0] == len(captions) and n_img != images.shape[0]:
        per_caption, images = images, images[::cpi]  # one row per caption: vsepp's im_div = 1
    elif images.shape[0] != n_img:
        raise DataError(f"{caps_path}: {len(captions)} captions for {images.shape[0]} images in "
                        f"{ims_path.name}; expected {cpi} x {images.shape[0]}")
    n = images.shape[0]
    if split == "dev" and max_dev_captions is not None and len(captions) > max_dev_captions:
        n = max_dev_captions // cpi
        images, captions = images[:n], captions[: n * cpi]
        per_caption = None if per_caption is None else per_caption[: n * cpi]
    from xmrlib.data.fingerprint import split_fingerprint

    data = PrecompData(root=root, split=split, images=images, captions=captions,
                       captions_per_image=cpi, caption_images=per_caption,
                       fingerprint=split_fingerprint(root, split))
    _load_extras(data, n)
    return data


def _check_n(path: Path, got: int, n: int) -> None:
    if got < n:
        raise DataError(f"{path}: {got} entries, expected {n} (one per image)")


def _load_extras(data: PrecompData, n: int) -> None:
    """Optional Shapes files; each must cover the ``n`` images."""
    root, split = data.root, data.split
    r = data.images.shape[1] if data.images.ndim == 3 else 1
    p = root / f"{split}_nregions.npy"
    if p.is_file():
        arr = _load_npy(p, False)
        _check_n(p, len(arr), n)
        data.n_regions = np.asarray(arr[:n], dtype=np.int64)
    else:
        data.n_regions = np.full(n, r, dtype=np.int64)
    p = root / f"{split}_boxes.npy"
    if p.is_file():
        arr = _load_npy(p, False)
        if arr.ndim != 3 or arr.shape[1:] != (r, 4):
            raise DataError(f"{p}: expected shape (N, {r}, 4), got {arr.shape}")
        _check_n(p, len(arr), n)
        data.boxes = np.asarray(arr[:n], dtype=np.float32)
    p = root / f"{split}_groups.npy"
    if p.is_file():
        arr = _load_npy(p, False)
        _check_n(p, len(arr), n)
        data.groups = np.asarray(arr[:n], dtype=np.int64)
    p = root / f"{split}_scenes.json"
    if p.is_file():
        try:
            scenes = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: not valid JSON: {e}") from e
        _check_n(p, len(scenes), n)
        data.scenes = scenes[:n]
    p = root / f"{split}_semantics.txt"
    if p.is_file():
        lines = _read_lines(p)
        _check_n(p, len(lines), n)
        data.semantics = [parse_semantics_line(l, p, i + 1) for i, l in enumerate(lines[:n])]
    img_dir = root / "images" / split
    if img_dir.is_dir():
        data.image_paths = [img_dir / f"{i:05d}.png" for i in range(n)]
    p = root / "manifest.json"
    if p.is_file():
        try:
            data.manifest = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: not valid JSON: {e}") from e


def get_dataset(dataset: str, data_root: str | Path | None = None, profile: str = "default",
                seed: int = 0, features: str | None = None) -> Path:
    """Folder of ``dataset``: Shapes is generated once (cached under ``build_dir()/data``);
    real precomp data must be in ``data_root/dataset`` or ``data_root``, and is checked as a
    whole (:func:`xmrlib.data.validate.check_dataset`) before it is returned."""
    from xmrlib.config import COMMON
    from xmrlib.utils import build_dir, config_hash, file_lock, lock_path

    if dataset == "shapes":
        from xmrlib.data.shapes import make_shapes, shapes_manifest

        if profile not in COMMON:
            raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(COMMON)}")
        c = COMMON[profile]
        if c["n_train"] is None:
            c = COMMON["default"]
        feats = features or (c["features"] if c["features"] in ("sim", "cnn") else "sim")
        kwargs = dict(n_train=c["n_train"], n_dev=c["n_dev"], n_test=c["n_test"], seed=seed,
                      features=feats)
        folder = build_dir() / "data" / f"shapes-{config_hash(kwargs)}"
        manifest = folder / "manifest.json"
        expected = shapes_manifest(c["n_train"], c["n_dev"], c["n_test"], seed, feats, 112, 128,
                                   64, 0.1, 2, 0.1, 0.1, 0.15)
        with file_lock(lock_path(folder.name)):  # chapters may run in parallel
            if not (manifest.is_file()
                    and json.loads(manifest.read_text(encoding="utf-8")) == expected):
                make_shapes(folder, **kwargs)
        return folder
    from xmrlib.data.validate import check_dataset, find_dataset_folder

    folder = find_dataset_folder(dataset, data_root)
    check_dataset(dataset, folder)
    return folder

"""Checks of a real-data folder before anything trains: the splits its data set needs, their sizes
under the data set's protocols, consistent features, and contents that match the data set named.

Everything here reads headers, line counts and a sample of feature rows, so it costs about a
second even on the 33 GB COCO training features; every failure is a :class:`DataError` that names
the file (or the folder) and what was expected. The protocols (Karpathy & Fei-Fei 2015, as
evaluated by VSE++ and SCAN): Flickr30K 1K on ``test`` (1000 images); MS-COCO 5-fold 1K and 5K,
both on ``testall`` (5000 images).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmrlib.data.precomp import (REAL_DATA_HELP, REAL_DATASETS, DataError, check_features,
                                 parse_semantics_line, SEMANTICS_FORMAT)

#: Splits each data set needs (COCO's 1K ``test`` is optional: its protocols use ``testall``).
REQUIRED_SPLITS = {"f30k_precomp": ("train", "dev", "test"),
                   "coco_precomp": ("train", "dev", "testall")}
OPTIONAL_SPLITS = {"f30k_precomp": (), "coco_precomp": ("test",)}
#: The split and image count each protocol of a real data set is defined on.
PROTOCOL_SPLITS = {"f30k_precomp": {"1k": ("test", 1000)},
                   "coco_precomp": {"5fold1k": ("testall", 5000), "5k": ("testall", 5000)}}
#: Image counts of the released splits (SCAN's and vsepp's precomp folders; COCO train with or
#: without restval) that only one data set has: finding one under the other is a contradiction.
SIGNATURES = {"f30k_precomp": {"train": (29000,), "dev": (1014,)},
              "coco_precomp": {"train": (82783, 113287), "dev": (5000,), "testall": (5000,)}}
NAMES = {"f30k_precomp": "Flickr30K", "coco_precomp": "MS-COCO"}


@dataclass
class SplitInfo:
    """What the checks read of one split."""

    n_images: int
    n_captions: int
    shape: tuple[int, ...]        # of {split}_ims.npy
    per_caption_rows: bool        # features stored once per caption (vsepp)


@dataclass
class DatasetInfo:
    """A checked real-data folder: its data set, splits and feature size."""

    dataset: str
    folder: Path
    splits: dict[str, SplitInfo] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        """Size of a feature vector (the last dimension, the same in every split)."""
        return next(iter(self.splits.values())).shape[-1]


def find_dataset_folder(dataset: str, data_root: str | Path | None) -> Path:
    """The folder holding ``dataset``'s files: ``data_root/dataset`` or ``data_root`` itself.

    A ``data_root`` named after the other data set (``.../coco_precomp`` for ``f30k_precomp``)
    is an error naming both.
    """
    if dataset not in REAL_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected shapes, "
                         f"{', '.join(REAL_DATASETS)}")
    if data_root is None:
        raise DataError(f"dataset {dataset!r} needs data_root (a folder holding {dataset}/ or "
                        f"its files). {REAL_DATA_HELP}")
    root = Path(data_root).expanduser()
    if (root / dataset).is_dir():
        return root / dataset
    if root.name in REAL_DATASETS and root.name != dataset:
        raise DataError(f"data root {root} is named {root.name} ({NAMES[root.name]}) but the "
                        f"dataset asked for is {dataset} ({NAMES[dataset]}): pass the folder "
                        f"that holds {dataset}/, or --dataset {root.name}")
    if any(root.glob("*_caps.txt")):
        return root
    what = "does not exist" if not root.exists() else "holds no *_caps.txt"
    raise DataError(f"no {dataset} files: {root / dataset} is not a folder and {root} {what} "
                    f"(expected {', '.join(REQUIRED_SPLITS[dataset])} _ims.npy and _caps.txt). "
                    f"{REAL_DATA_HELP}")


def _count_lines(path: Path) -> int:
    """Lines of a text file (a last line without newline counts), read in blocks."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def check_split(folder: Path, split: str, captions_per_image: int = 5) -> SplitInfo:
    """Header, dtype, finite sample and caption count of one split (optional semantics too)."""
    ims, caps = folder / f"{split}_ims.npy", folder / f"{split}_caps.txt"
    for path in (ims, caps):
        if not path.is_file():
            raise DataError(f"missing file {path}. {REAL_DATA_HELP}")
    try:
        arr = np.load(ims, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{ims}: not a readable .npy array (truncated or corrupt?): {e}") from e
    if arr.ndim not in (2, 3):
        raise DataError(f"{ims}: expected rank 2 (N, D) or 3 (N, R, D), got shape {arr.shape}")
    check_features(arr, ims)
    n_caps = _count_lines(caps)
    if n_caps % captions_per_image:
        raise DataError(f"{caps}: {n_caps} captions, expected a multiple of {captions_per_image}")
    n_img = n_caps // captions_per_image
    per_caption = arr.shape[0] == n_caps and n_caps != n_img
    if arr.shape[0] != n_img and not per_caption:
        raise DataError(f"{caps}: {n_caps} captions for {arr.shape[0]} images in {ims.name}; "
                        f"expected {captions_per_image} x {arr.shape[0]}")
    sem = folder / f"{split}_semantics.txt"
    if sem.is_file():
        check_semantics(sem, split, n_img)
    return SplitInfo(n_img, n_caps, tuple(arr.shape), per_caption)


def check_semantics(path: Path, split: str, n_images: int) -> None:
    """A ``{split}_semantics.txt`` has one well-formed line per image (every line parsed, as
    chapter 06 reads it: a line count alone lets a tab-separated line through as one phrase)."""
    n = _count_lines(path)
    if n != n_images:
        raise DataError(f"{path}: {n} lines for {n_images} images; expected "
                        f"{SEMANTICS_FORMAT.replace('{split}', split)}")
    with open(path, encoding="utf-8", errors="strict", newline="") as f:
        try:
            for lineno, line in enumerate(f, start=1):
                parse_semantics_line(line.rstrip("\n").rstrip("\r"), path, lineno)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 ({e.reason})") from e


def _check_identity(dataset: str, folder: Path, present: list[str],
                    splits: dict[str, SplitInfo]) -> None:
    """Contents that belong to the other data set are an error naming both."""
    other = next(d for d in REAL_DATASETS if d != dataset)
    if dataset == "f30k_precomp" and "testall" in present:
        raise DataError(f"{folder / 'testall_ims.npy'}: a testall split is MS-COCO's 5K test "
                        f"set (coco_precomp), but --dataset is {dataset} (Flickr30K): pass "
                        "--dataset coco_precomp or the Flickr30K folder")
    for split, sizes in SIGNATURES[other].items():
        if split in splits and splits[split].n_images in sizes:
            raise DataError(f"{folder / f'{split}_ims.npy'}: {splits[split].n_images} images, "
                            f"the size of {NAMES[other]}'s {split} split ({other}), but "
                            f"--dataset is {dataset} ({NAMES[dataset]}): pass --dataset {other} "
                            f"or the {NAMES[dataset]} folder")


def check_dataset(dataset: str, folder: str | Path) -> DatasetInfo:
    """Check a real-data folder as a whole, before any training: every required split is
    readable and well-formed (:func:`check_split`), all splits have the same feature size, the
    protocol splits have their image counts, and nothing in it belongs to the other data set."""
    folder = Path(folder)
    required, optional = REQUIRED_SPLITS[dataset], OPTIONAL_SPLITS[dataset]
    present = [s for s in (*required, *optional, "test", "testall")
               if (folder / f"{s}_caps.txt").is_file() or (folder / f"{s}_ims.npy").is_file()]
    missing = [f"{s}{ext}" for s in required for ext in ("_ims.npy", "_caps.txt")
               if not (folder / f"{s}{ext}").is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)} ({NAMES[dataset]} needs the "
                        f"splits {', '.join(required)}). {REAL_DATA_HELP}")
    _check_identity(dataset, folder, present, {})
    info = DatasetInfo(dataset, folder)
    for split in dict.fromkeys(present):
        info.splits[split] = check_split(folder, split)
    _check_identity(dataset, folder, present, info.splits)
    dims = {s: i.shape[-1] for s, i in info.splits.items()}
    if len(set(dims.values())) > 1:
        first = next(iter(dims))
        odd = next(s for s, d in dims.items() if d != dims[first])
        raise DataError(f"{folder / f'{odd}_ims.npy'}: feature size {dims[odd]}, expected "
                        f"{dims[first]} as in {first}_ims.npy (every split must come from the "
                        "same feature extractor)")
    for protocol, (split, n) in PROTOCOL_SPLITS[dataset].items():
        check_protocol_split(dataset, protocol, split, info.splits[split].n_images, folder)
    return info


def protocol_split(dataset: str, protocol: str) -> str:
    """The split a protocol of a real data set is defined on (Shapes: ``test``)."""
    if dataset not in PROTOCOL_SPLITS:
        return "test"
    if protocol not in PROTOCOL_SPLITS[dataset]:
        raise DataError(f"protocol {protocol!r} is not one of {NAMES[dataset]}'s: expected "
                        f"{' or '.join(PROTOCOL_SPLITS[dataset])}")
    return PROTOCOL_SPLITS[dataset][protocol][0]


def check_protocol_split(dataset: str, protocol: str, split: str, n_images: int,
                         folder: str | Path | None = None) -> None:
    """A real data set's protocol runs on its split with its image count (Flickr30K 1K: test,
    1000 images; COCO 5-fold 1K and 5K: testall, 5000 images); anything else is an error that
    names the split (and file) and what was expected. Shapes accepts any split and size."""
    if dataset not in PROTOCOL_SPLITS:
        return
    want_split = protocol_split(dataset, protocol)
    want_n = PROTOCOL_SPLITS[dataset][protocol][1]
    where = f"{Path(folder) / f'{split}_ims.npy'}" if folder is not None else f"split {split!r}"
    if split != want_split:
        raise DataError(f"{where}: the {protocol} protocol of {NAMES[dataset]} is defined on "
                        f"the {want_split} split ({want_n} images), not on {split}")
    if n_images != want_n:
        raise DataError(f"{where}: {n_images} images, expected {want_n} ({NAMES[dataset]}'s "
                        f"{protocol} protocol is defined on {want_n} {want_split} images)")

"""Provenance of a run: code version, package versions, device and data (for ``run.json``)."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from xmrlib.results import ReproduceError
from xmrlib.utils import build_dir, repo_root

#: Packages whose versions go into ``run.json``.
PROVENANCE_PACKAGES = ("xmrlib", "torch", "numpy", "scipy", "pandas", "matplotlib", "scikit-learn",
                       "papermill", "ipykernel", "jupyter-book", "transformers", "faiss-cpu")


def relative_to_build(path: Path) -> str:
    """``path`` relative to the build folder (run records name no machine paths)."""
    try:
        return path.resolve().relative_to(build_dir().resolve()).as_posix()
    except ValueError:
        return path.name


def git_state(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository (tracked files)."""
    root = root or repo_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def package_versions(names: Sequence[str] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` when a package is absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_device(device: str) -> str:
    """Name of the device a run will use (GPU model or ``cpu``)."""
    from xmrlib.utils import device_name, resolve_device

    return device_name(resolve_device(device))


def features_label(shape: Sequence[int]) -> str:
    """Paper-style name of precomputed features from the array shape of ``test_ims.npy``."""
    if len(shape) == 3 and tuple(shape[1:]) == (36, 2048):
        return "BUTD 36x2048"
    if len(shape) == 2 and shape[1] == 4096:
        return "VGG"
    if len(shape) == 2 and shape[1] == 2048:
        return "ResNet-152 precomp"
    return "precomp " + "x".join(str(s) for s in shape[1:])



def portable_path(path: Path) -> str:
    """How a run record names a folder: relative to the repository when inside it, else just
    the folder's name (run records name no machine paths)."""
    try:
        return path.resolve().relative_to(repo_root().resolve()).as_posix()
    except ValueError:
        return path.name


#: Splits of a precomp folder whose fingerprints a run record keeps (those present).
RECORDED_SPLITS = ("train", "dev", "test", "testall")


def vocabulary_note(dataset: str, folder: Path, profile: str) -> str | None:
    """The sentence :func:`xmrlib.vocab.dataset_vocabulary` gives for the vocabulary of
    ``profile``'s runs on this folder (None without training captions)."""
    from xmrlib.config import chapter_config
    from xmrlib.data.precomp import _read_lines
    from xmrlib.vocab import dataset_vocabulary

    caps = folder / "train_caps.txt"
    if not caps.is_file():
        return None
    min_count = chapter_config("common", profile, dataset=dataset)["vocab_min_count"]
    return dataset_vocabulary(_read_lines(caps), folder, dataset, min_count=min_count)[1]


def data_provenance(dataset: str, folder: Path | None, profile: str = "default"
                    ) -> dict[str, Any]:
    """Source, feature type, content fingerprint per split and vocabulary of a run's data. The
    source is the data set's name, never its folder (real data: the feature label from the
    first split's array shape; fingerprints of :mod:`xmrlib.data.fingerprint`)."""
    if folder is None:
        return {"source": "Shapes generator (xmrlib.data)", "features": "Shapes"}
    import numpy as np

    from xmrlib.data.fingerprint import split_fingerprint

    ims = next((folder / f"{s}_ims.npy" for s in ("test", "testall", "dev", "train")
                if (folder / f"{s}_ims.npy").exists()), None)
    try:
        label = features_label(np.load(ims, mmap_mode="r").shape) if ims else "unknown"
    except (ValueError, OSError, EOFError) as exc:
        raise ReproduceError(f"{ims}: not a readable .npy array (truncated or corrupt?): "
                             f"{exc}") from exc
    fingerprints = {s: split_fingerprint(folder, s) for s in RECORDED_SPLITS
                    if (folder / f"{s}_ims.npy").is_file()}
    return {"source": dataset, "features": label, "fingerprints": fingerprints,
            "vocabulary": vocabulary_note(dataset, folder, profile)}

"""Profiles: the one place where the smoke / default / full values of every chapter live.

* ``smoke``   tiny Shapes, seconds per chapter (CI, every commit).
* ``default`` Shapes at book size, small models and few epochs chosen so the whole book builds in
  under 25 minutes on 2 CPU cores (the published book).
* ``full``    the papers' hyperparameters on real precomp features, on a GPU (reproducers).

Default-profile values are ours, chosen for the CPU budget; paper values live in ``full`` only.
A chapter resolves its parameters with :func:`chapter_config`.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

PROFILE_NAMES = ("smoke", "default", "full")
DATASETS = ("shapes", "f30k_precomp", "coco_precomp")

#: Values shared by every chapter (Shapes sizes, evaluation protocol, batch sizes).
COMMON: dict[str, dict[str, Any]] = {
    "smoke": {"n_train": 300, "n_dev": 100, "n_test": 100, "features": "sim", "protocol": "1k",
              "eval_batch_size": 256},
    "default": {"n_train": 5000, "n_dev": 1000, "n_test": 1000, "features": "sim", "protocol": "1k",
                "eval_batch_size": 512},
    "full": {"n_train": None, "n_dev": None, "n_test": None, "features": "precomp", "protocol": "1k",
             "eval_batch_size": 128},
}

#: Per-chapter values, by profile. Each chapter's owner edits only its own entry.
CHAPTERS: dict[str, dict[str, dict[str, Any]]] = {
    "01": {"smoke": {}, "default": {}, "full": {}},
    "02": {"smoke": {}, "default": {}, "full": {}},
    "03": {"smoke": {}, "default": {}, "full": {}},
    "04": {"smoke": {}, "default": {}, "full": {}},
    "05": {"smoke": {}, "default": {}, "full": {}},
    "06": {"smoke": {}, "default": {}, "full": {}},
    "07": {"smoke": {}, "default": {}, "full": {}},
}


def chapter_config(chapter: str, profile: str, **overrides: Any) -> dict[str, Any]:
    """Merge COMMON[profile], CHAPTERS[chapter][profile] and the non-``None`` overrides.

    Raises ``ValueError`` naming the unknown chapter, profile or parameter.
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILE_NAMES)}")
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}: expected one of {', '.join(CHAPTERS)}")
    cfg = deepcopy(COMMON[profile])
    cfg.update(deepcopy(CHAPTERS[chapter][profile]))
    known = set(cfg) | {"profile", "dataset", "data_root", "device", "seed"}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"unknown parameter {name!r} for chapter {chapter} "
                             f"(profile {profile}): known ones are {', '.join(sorted(known))}")
        if value is not None:
            cfg[name] = value
    cfg["profile"] = profile
    cfg["chapter"] = chapter
    return cfg

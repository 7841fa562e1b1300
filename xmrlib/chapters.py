"""The chapter notebooks on disk: which exist, what parameters they take, where copies run.

A chapter is a notebook ``notebooks/NN_name.ipynb`` (``XMR_NOTEBOOKS_DIR`` moves the folder)
whose ``parameters`` cell papermill fills; a run of it is for one profile and one dataset, and
its executed copy goes to ``build/notebooks/<profile>/<dataset>/``.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

from xmrlib.config import DATASETS, PROFILE_NAMES
from xmrlib.results import ReproduceError
from xmrlib.utils import build_dir, repo_root

CHAPTER_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")


def notebooks_dir() -> Path:
    """Folder of the chapter notebooks; ``XMR_NOTEBOOKS_DIR`` overrides ``<repo>/notebooks``."""
    return Path(os.environ.get("XMR_NOTEBOOKS_DIR", repo_root() / "notebooks"))


def executed_dir(profile: str, dataset: str) -> Path:
    """Git-ignored folder of the executed notebooks of one profile and dataset."""
    return build_dir() / "notebooks" / profile / dataset


def discover_chapters(nb_dir: Path | None = None) -> dict[str, Path]:
    """Map chapter number ``"NN"`` to its notebook ``NN_name.ipynb`` (sorted by number)."""
    nb_dir = Path(nb_dir) if nb_dir is not None else notebooks_dir()
    found: dict[str, Path] = {}
    for path in sorted(nb_dir.glob("*.ipynb")):
        m = CHAPTER_RE.match(path.name)
        if m:
            if m.group(1) in found:
                raise ReproduceError(f"two notebooks for chapter {m.group(1)} in {nb_dir}: "
                                     f"{found[m.group(1)].name} and {path.name}")
            found[m.group(1)] = path
    return found


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and defaults of the ``parameters`` cell of a notebook (papermill's inspection)."""
    import papermill

    info = papermill.inspect_notebook(str(path))
    defaults: dict[str, Any] = {}
    for name, spec in info.items():
        try:  # papermill returns the default's source text
            defaults[name] = ast.literal_eval(spec.get("default"))
        except (ValueError, SyntaxError):
            defaults[name] = spec.get("default")
    return defaults


#: a named run of another chapter in a chapter's code: ``chapter_run("NN", ...)`` or a
#: ``("NN", "name")`` key of :data:`xmrlib.chapter_runs.RUNS`
_RELOAD_RE = re.compile(r'chapter_run\(\s*"(\d\d)"|\(\s*"(\d\d)",\s*"[^"\n]+"\s*\)')


def reloaded_chapters(path: Path) -> set[str]:
    """The other chapters whose named training runs the notebook ``path`` reloads (chapter 07
    reloads those of 02-05, chapter 04 chapter 03's VSE++), read from its code cells."""
    own = CHAPTER_RE.match(path.name)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    found = {a or b for a, b in _RELOAD_RE.findall(code)}
    return found - {own.group(1) if own else ""}


def check_profile_dataset(profile: str, dataset: str) -> None:
    """Refuse a profile or dataset that :mod:`xmrlib.config` does not know."""
    if profile not in PROFILE_NAMES:
        raise ReproduceError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILE_NAMES)}")
    if dataset not in DATASETS:
        raise ReproduceError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")


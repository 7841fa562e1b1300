"""Results of chapter runs on disk: where they live, the tables chapters save, the run records.

Chapters save results only through :func:`save_table` and :func:`save_metrics`, into
``results/<profile>/<dataset>/<chapter>/``; :mod:`xmrlib.reproduce` adds ``run.json`` (the run
record, read back by :func:`read_run_json`). ``XMR_RESULTS_DIR`` moves the whole tree.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from xmrlib.utils import atomic_write_text, repo_root


class ReproduceError(ValueError):
    """A bad argument or input of the runner (printed as ``error: ...`` by the CLI)."""


def results_root() -> Path:
    """Root of the results tree; ``XMR_RESULTS_DIR`` overrides ``<repo>/results``."""
    return Path(os.environ.get("XMR_RESULTS_DIR", repo_root() / "results"))


def results_dir(profile: str, dataset: str, chapter: str) -> Path:
    """``results/<profile>/<dataset>/<chapter>/`` (not created)."""
    return results_root() / profile / dataset / chapter


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise ReproduceError(f"result name {name!r}: use letters, digits, '_' or '-' only")


def save_table(df: pd.DataFrame, name: str, chapter: str, profile: str, dataset: str) -> Path:
    """Write ``df`` as ``<results_dir>/<name>.csv`` atomically (no index) and return the path."""
    _check_name(name)
    path = results_dir(profile, dataset, chapter) / f"{name}.csv"
    atomic_write_text(path, df.to_csv(index=False))
    return path


def save_metrics(metrics: dict[str, Any], name: str, chapter: str, profile: str,
                 dataset: str) -> Path:
    """Write a flat metrics dict as a one-row CSV ``<name>.csv`` (columns = keys)."""
    return save_table(pd.DataFrame([metrics]), name, chapter, profile, dataset)


def load_table(name: str, chapter: str, profile: str, dataset: str) -> pd.DataFrame:
    """Read back a table written by :func:`save_table`."""
    path = results_dir(profile, dataset, chapter) / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"no results table {path}: run chapter {chapter} first")
    return pd.read_csv(path)


def read_run_json(path: Path) -> dict[str, Any]:
    """A ``run.json`` with the keys the report needs, or a :class:`ReproduceError` naming it."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReproduceError(f"{path}: not valid JSON ({exc}); re-run the chapter with --force "
                             "or delete the file") from exc
    keys = ("chapter", "dataset", "profile", "seed")
    missing = [k for k in keys if k not in info] if isinstance(info, dict) else list(keys)
    if missing:
        raise ReproduceError(f"{path}: missing key(s) {', '.join(missing)} "
                             "(expected a run.json written by xmrlib.reproduce run)")
    return info


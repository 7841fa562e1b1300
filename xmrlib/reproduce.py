"""Batch reproduction of the book: papermill runner, results I/O, provenance and the report.

CLI (``python -m xmrlib.reproduce``):

* ``run --profile smoke|default|full --dataset shapes|f30k_precomp|coco_precomp [--data-root DIR]
  [--device auto|cpu|cuda] [--chapters 01 03 ...] [-p NAME VALUE ...] [--force]`` executes the
  chapter notebooks ``notebooks/NN_*.ipynb`` with papermill (kernel of this interpreter,
  ``OMP_NUM_THREADS=1``); ``-p NAME=VALUE`` works too. Executed copies go to
  ``build/notebooks/<profile>/<dataset>/``; the tables a chapter saves go to
  ``results/<profile>/<dataset>/<chapter>/`` with ``run.json`` (provenance). A chapter whose
  results are complete for the same parameters and notebook, and whose executed copy exists, is
  skipped unless ``--force``. A chapter that was killed has no ``run.json`` and runs again; its
  training runs resume from their checkpoints.
* ``report`` writes ``results/report.md`` and ``results/report.csv``: paper value, our value and,
  only when dataset, features and protocol match the paper's row, their difference.
* ``book --profile P --dataset D`` assembles ``build/book/`` (executed chapters, the table of
  contents of what exists, the report, a Shapes gallery) for ``jupyter-book build``.
* ``evaluate --run-dir DIR --dataset D [--data-root DIR] --protocol 1k|5k|5fold1k`` evaluates a
  trained checkpoint (a run folder of :mod:`xmrlib.train`).

Chapters save results only through :func:`save_table` and :func:`save_metrics`. A table joins the
report when it has a ``paper_row`` column holding a row id of :mod:`xmrlib.papers`; optional
``features`` / ``protocol`` columns override the run's values for that row.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from xmrlib.config import COMMON, DATASETS, PROFILE_NAMES
from xmrlib.utils import atomic_write_json, atomic_write_text, build_dir, repo_root

#: Metric columns that the report compares (flat names, as everywhere in xmrlib).
METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr",
           "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr", "rsum")
#: Parameters every chapter's ``parameters`` cell declares (CONTRIBUTING.md).
BASE_PARAMETERS = ("profile", "dataset", "data_root", "device", "seed")
#: Packages whose versions go into ``run.json``.
PROVENANCE_PACKAGES = ("xmrlib", "torch", "numpy", "scipy", "pandas", "matplotlib", "scikit-learn",
                       "papermill", "ipykernel", "jupyter-book", "transformers", "faiss-cpu")
#: Paper dataset names (``xmrlib.papers``) of our real datasets.
PAPER_DATASET = {"f30k_precomp": "Flickr30K", "coco_precomp": "MS-COCO"}
KERNEL_NAME = "python3"
_CHAPTER_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")


class ReproduceError(ValueError):
    """A bad argument or input of the runner (printed as ``error: ...`` by the CLI)."""


# --------------------------------------------------------------------------- paths and results API

def results_root() -> Path:
    """Root of the results tree; ``XMR_RESULTS_DIR`` overrides ``<repo>/results``."""
    return Path(os.environ.get("XMR_RESULTS_DIR", repo_root() / "results"))


def notebooks_dir() -> Path:
    """Folder of the chapter notebooks; ``XMR_NOTEBOOKS_DIR`` overrides ``<repo>/notebooks``."""
    return Path(os.environ.get("XMR_NOTEBOOKS_DIR", repo_root() / "notebooks"))


def results_dir(profile: str, dataset: str, chapter: str) -> Path:
    """``results/<profile>/<dataset>/<chapter>/`` (not created)."""
    return results_root() / profile / dataset / chapter


def executed_dir(profile: str, dataset: str) -> Path:
    """Git-ignored folder of the executed notebooks of one profile and dataset."""
    return build_dir() / "notebooks" / profile / dataset


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


# --------------------------------------------------------------------------- discovery and params

def discover_chapters(nb_dir: Path | None = None) -> dict[str, Path]:
    """Map chapter number ``"NN"`` to its notebook ``NN_name.ipynb`` (sorted by number)."""
    nb_dir = Path(nb_dir) if nb_dir is not None else notebooks_dir()
    found: dict[str, Path] = {}
    for path in sorted(nb_dir.glob("*.ipynb")):
        m = _CHAPTER_RE.match(path.name)
        if m:
            if m.group(1) in found:
                raise ReproduceError(f"two notebooks for chapter {m.group(1)} in {nb_dir}: "
                                     f"{found[m.group(1)].name} and {path.name}")
            found[m.group(1)] = path
    return found


def parse_value(text: str) -> Any:
    """Parse a ``-p NAME VALUE`` value: JSON (numbers, true/false/null, lists) or Python
    spellings ``None``/``True``/``False``, else the string itself."""
    python = {"None": None, "True": True, "False": False}
    if text in python:
        return python[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_param(words: Sequence[str]) -> tuple[str, Any]:
    """``["lr", "0.1"]`` or ``["lr=0.1"]`` (the words after one ``-p``) -> ``("lr", 0.1)``."""
    if len(words) == 1 and "=" in words[0]:
        words = words[0].split("=", 1)
    if len(words) != 2 or not words[0]:
        raise ReproduceError(f"-p {' '.join(words)}: expected -p NAME VALUE or -p NAME=VALUE")
    return words[0], parse_value(words[1])


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


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- provenance

def _relative_to_build(path: Path) -> str:
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


def resolve_data_root(dataset: str, data_root: str | Path | None) -> Path | None:
    """Check ``--data-root`` for a real dataset: returns the folder holding ``*_ims.npy``."""
    if dataset == "shapes":
        return None
    if data_root is None:
        raise ReproduceError(f"dataset {dataset!r} needs --data-root: a folder that holds "
                             f"{dataset}/ (or its files test_ims.npy, test_caps.txt) in the SCAN "
                             "precomp layout; see the book's real-data guide")
    root = Path(data_root).expanduser()
    for candidate in (root / dataset, root):
        if (candidate / "test_caps.txt").exists() or any(candidate.glob("*_ims.npy")):
            return candidate
    raise ReproduceError(f"--data-root {root}: neither {root / dataset} nor {root} holds "
                         f"precomp files (expected test_ims.npy and test_caps.txt)")


def data_provenance(dataset: str, folder: Path | None) -> dict[str, Any]:
    """Source and feature type of the data of a run (real data: from the test features' shape)."""
    if folder is None:
        return {"source": "Shapes generator (xmrlib.data)", "features": "Shapes"}
    import numpy as np

    ims = next((folder / f"{s}_ims.npy" for s in ("test", "testall", "dev", "train")
                if (folder / f"{s}_ims.npy").exists()), None)
    try:
        label = features_label(np.load(ims, mmap_mode="r").shape) if ims else "unknown"
    except (ValueError, OSError, EOFError) as exc:
        raise ReproduceError(f"{ims}: not a readable .npy array (truncated or corrupt?): "
                             f"{exc}") from exc
    return {"source": str(folder), "features": label}


# --------------------------------------------------------------------------- running

@dataclass
class ChapterOutcome:
    """What happened to one chapter of a run."""

    chapter: str
    status: str                      # "complete" | "skipped" | "failed"
    wall_s: float = 0.0
    error: str | None = None
    executed: Path | None = None
    files: list[str] = field(default_factory=list)


def _complete(run_json: Path, params: dict[str, Any], nb_sha: str, executed: Path) -> bool:
    if not run_json.exists() or not executed.exists():
        return False
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return (info.get("status") == "complete" and info.get("parameters") == params
            and info.get("notebook_sha256") == nb_sha)


def _failure_message(chapter: str, exc: Exception, source: Path, executed: Path) -> str:
    """One line naming the failing cell (index in the source notebook, first line) and error."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        first = (exc.source or "").strip().splitlines()[:1]
        index = exc.cell_index  # in the executed copy; papermill injected a parameters cell
        try:
            cells = nbformat.read(executed, as_version=4).cells[:exc.cell_index]
            index -= sum("injected-parameters" in c.metadata.get("tags", []) for c in cells)
        except (OSError, ValueError):
            pass
        return (f"chapter {chapter} failed in cell {index} of {source.name} "
                f"(starts `{first[0] if first else ''}`; executed copy {executed}): "
                f"{exc.ename}: {exc.evalue}")
    return f"chapter {chapter} failed: {type(exc).__name__}: {exc}"


def _publish(staging: Path, final: Path) -> list[str]:
    """Replace the CSVs of ``final`` by those of ``staging`` (each file written atomically)."""
    final.mkdir(parents=True, exist_ok=True)
    for old in final.glob("*.csv"):
        old.unlink()
    names = []
    for src in sorted(staging.glob("*.csv")):
        atomic_write_text(final / src.name, src.read_text(encoding="utf-8"))
        names.append(src.name)
    return names


def _check_profile_dataset(profile: str, dataset: str) -> None:
    if profile not in PROFILE_NAMES:
        raise ReproduceError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILE_NAMES)}")
    if dataset not in DATASETS:
        raise ReproduceError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")


def run_chapters(profile: str, dataset: str, data_root: str | Path | None = None,
                 device: str = "auto", chapters: Sequence[str] | None = None,
                 params: dict[str, Any] | None = None, force: bool = False,
                 nb_dir: Path | None = None, log=print) -> list[ChapterOutcome]:
    """Execute chapter notebooks; see the module docstring. Returns one outcome per chapter.

    Raises :class:`ReproduceError` for an unknown profile, dataset, chapter or parameter and for a
    missing data root, before anything runs.
    """
    import papermill

    _check_profile_dataset(profile, dataset)
    folder = resolve_data_root(dataset, data_root)
    available = discover_chapters(nb_dir)
    selected = list(chapters) if chapters else list(available)
    if not selected:
        log(f"no chapter notebooks (NN_name.ipynb) in {nb_dir or notebooks_dir()}: nothing to run")
    unknown = [c for c in selected if c not in available]
    if unknown:
        raise ReproduceError(f"unknown chapter(s) {', '.join(unknown)}: the notebooks folder "
                             f"{nb_dir or notebooks_dir()} has {', '.join(available) or 'none'}")
    params = dict(params or {})
    declared = {c: notebook_parameters(available[c]) for c in selected}
    for name in params:
        if name in BASE_PARAMETERS:
            raise ReproduceError(f"-p {name}: set it with --{name.replace('_', '-')} instead")
        if not any(name in d for d in declared.values()):
            known = sorted({n for d in declared.values() for n in d} - set(BASE_PARAMETERS))
            raise ReproduceError(f"unknown parameter {name!r} for chapter(s) {', '.join(selected)}:"
                                 f" known ones are {', '.join(known) or 'none'}")

    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the kernels
    dev_name = describe_device(device)
    data_info = data_provenance(dataset, folder)
    git = git_state()
    versions = package_versions()
    outcomes: list[ChapterOutcome] = []
    for chapter in selected:
        nb = available[chapter]
        nb_params = {"profile": profile, "dataset": dataset,
                     "data_root": str(folder) if folder else None, "device": device}
        nb_params.update({k: v for k, v in params.items() if k in declared[chapter]})
        nb_params.setdefault("seed", declared[chapter].get("seed", 0))
        nb_sha = _file_sha(nb)
        executed = executed_dir(profile, dataset) / nb.name
        final = results_dir(profile, dataset, chapter)
        if not force and _complete(final / "run.json", nb_params, nb_sha, executed):
            log(f"[{chapter}] skipped: results complete for these parameters (use --force)")
            outcomes.append(ChapterOutcome(chapter, "skipped", executed=executed))
            continue
        # not complete from here on: a kill while running or publishing leaves no run.json,
        # so the next run re-runs the chapter instead of skipping a torn result
        (final / "run.json").unlink(missing_ok=True)
        staging = build_dir() / "staging" / uuid.uuid4().hex
        previous = os.environ.get("XMR_RESULTS_DIR")
        os.environ["XMR_RESULTS_DIR"] = str(staging)
        executed.parent.mkdir(parents=True, exist_ok=True)
        start, t0 = datetime.now(timezone.utc), time.perf_counter()
        log(f"[{chapter}] running {nb.name} ({profile}, {dataset})")
        error = None
        try:
            papermill.execute_notebook(str(nb), str(executed), parameters=nb_params,
                                       kernel_name=KERNEL_NAME, progress_bar=False,
                                       cwd=str(nb.parent))
        except Exception as exc:  # noqa: BLE001 - any failure is reported and the others run
            error = _failure_message(chapter, exc, nb, executed)
        finally:
            if previous is None:
                os.environ.pop("XMR_RESULTS_DIR", None)
            else:
                os.environ["XMR_RESULTS_DIR"] = previous
        wall = time.perf_counter() - t0
        staged = staging / profile / dataset / chapter
        files = _publish(staged, final) if error is None else []
        shutil.rmtree(staging, ignore_errors=True)
        info = {"status": "failed" if error else "complete", "chapter": chapter,
                "notebook": nb.name, "notebook_sha256": nb_sha, "executed_notebook": _relative_to_build(executed),
                "parameters": nb_params, "seed": nb_params["seed"], "profile": profile,
                "dataset": dataset, "git": git, "packages": versions, "device": dev_name,
                "python": platform.python_version(), "platform": platform.platform(),
                "start": start.isoformat(), "end": datetime.now(timezone.utc).isoformat(),
                "wall_s": round(wall, 2), "data": data_info, "files": files, "error": error}
        if error is None:
            atomic_write_json(final / "run.json", info)
            log(f"[{chapter}] complete in {wall:.1f} s: {len(files)} table(s)")
        else:
            atomic_write_json(build_dir() / "failed" / profile / dataset / f"{chapter}.json", info)
            log(f"[{chapter}] FAILED after {wall:.1f} s: {error}")
        outcomes.append(ChapterOutcome(chapter, info["status"], wall, error, executed, files))
    return outcomes


# --------------------------------------------------------------------------- report

def _comparable(paper: pd.Series, dataset: str, features: str | None, protocol: str | None) -> bool:
    return (PAPER_DATASET.get(dataset) == paper["dataset"] and features == paper["features"]
            and protocol == paper["protocol"])


def _read_run_json(path: Path) -> dict[str, Any]:
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


def build_report(root: Path | None = None) -> pd.DataFrame:
    """Paper-vs-run rows for every saved table that names ``paper_row`` ids (long format)."""
    from xmrlib.papers import paper_rows

    root = root or results_root()
    papers = paper_rows().set_index("row_id")
    rows = []
    for run_json in sorted(root.glob("*/*/*/run.json")):
        info = _read_run_json(run_json)
        params = info.get("parameters", {})
        for csv in sorted(run_json.parent.glob("*.csv")):
            try:
                table = pd.read_csv(csv)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise ReproduceError(f"{csv}: not a readable results table ({exc}); re-run "
                                     f"chapter {info['chapter']} with --force") from exc
            if "paper_row" not in table.columns:
                continue
            for _, ours in table.iterrows():
                if pd.isna(ours["paper_row"]) or not str(ours["paper_row"]).strip():
                    continue  # a row of ours with no paper counterpart
                if ours["paper_row"] not in papers.index:
                    raise ReproduceError(f"{csv}: paper_row {ours['paper_row']!r} is not a row "
                                         "id of xmrlib.papers")
                paper = papers.loc[ours["paper_row"]]
                features = ours.get("features", info.get("data", {}).get("features"))
                protocol = ours.get("protocol", params.get("protocol")
                                    or COMMON.get(info.get("profile"), {}).get("protocol"))
                same = _comparable(paper, info["dataset"], features, protocol)
                for metric in METRICS:
                    if metric not in table.columns or pd.isna(paper.get(metric)):
                        continue
                    mine = ours[metric]
                    rows.append({
                        "chapter": info["chapter"], "table": csv.stem,
                        "paper": paper["paper_name"], "paper_table": paper["table"],
                        "paper_row": paper["method"],
                        "paper_setting": f"{paper['dataset']} {paper['protocol']}, "
                                         f"{paper['features']}",
                        "run": ours.get("label", ours.get("method", "")),
                        "run_setting": f"{info['dataset']} {protocol}, {features}, "
                                       f"{info['profile']} profile, seed {info['seed']}",
                        "metric": metric, "paper_value": float(paper[metric]),
                        "our_value": float(mine),
                        "delta": round(float(mine) - float(paper[metric]), 2) if same else None,
                    })
    return pd.DataFrame(rows, columns=["chapter", "table", "paper", "paper_table", "paper_row",
                                       "paper_setting", "run", "run_setting", "metric",
                                       "paper_value", "our_value", "delta"])


def report_markdown(df: pd.DataFrame) -> str:
    """Markdown of the report table (deltas shown only where the settings match)."""
    if df.empty:
        return ("No reproduced table names a paper row yet: run "
                "`python -m xmrlib.reproduce run` first.\n")
    shown = df.copy()
    shown["delta"] = shown["delta"].map(lambda v: "n/a (setting differs)" if pd.isna(v)
                                        else f"{v:+.2f}")
    shown["our_value"] = shown["our_value"].map(lambda v: f"{v:.2f}")
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n"
                   for row in shown.itertuples(index=False))
    return header + body


def write_report(root: Path | None = None) -> tuple[Path, Path, pd.DataFrame]:
    """Write ``report.md`` and ``report.csv`` at the results root; return their paths and table."""
    root = root or results_root()
    df = build_report(root)
    md, csv = root / "report.md", root / "report.csv"
    atomic_write_text(md, report_markdown(df))
    atomic_write_text(csv, df.to_csv(index=False))
    return md, csv, df


# --------------------------------------------------------------------------- book assembly

def _toc_entries(node: Any) -> Any:
    """Copy of a _toc.yml node where each ``glob`` entry becomes the ``file`` it matches; an
    entry that matches nothing is dropped, and so is a part left without chapters."""
    root = repo_root()
    if isinstance(node, list):
        kept = [e for e in (_toc_entries(v) for v in node) if e is not None]
        return kept or None
    if not isinstance(node, dict):
        return node
    if "glob" in node:
        hits = sorted(p for p in root.glob(node["glob"]) if p.suffix in (".ipynb", ".md"))
        if len(hits) == 1:
            return {"file": hits[0].relative_to(root).with_suffix("").as_posix()}
        return node if hits else None
    out = {}
    for key, value in node.items():
        value = _toc_entries(value)
        if key in ("chapters", "sections", "parts") and value is None:
            if "file" not in node:
                return None
            continue
        out[key] = value
    return out


def assemble_book(profile: str, dataset: str) -> Path:
    """Fill ``build/book/`` for ``jupyter-book build . --toc build/book/_toc.yml``: the executed
    chapters of ``profile``/``dataset``, a table of contents listing only what exists, the
    reproduction report and a gallery of Shapes scenes. Returns the effective toc path."""
    import yaml

    _check_profile_dataset(profile, dataset)
    book = repo_root() / "build" / "book"
    nb_out = book / "notebooks"
    if nb_out.exists():
        shutil.rmtree(nb_out)
    nb_out.mkdir(parents=True)
    src = executed_dir(profile, dataset)
    for path in sorted(src.glob("*.ipynb")):
        if _CHAPTER_RE.match(path.name):
            shutil.copy2(path, nb_out / path.name)
    md, _, _ = write_report()
    atomic_write_text(book / "report.md", md.read_text(encoding="utf-8"))
    atomic_write_text(book / "datasets_gallery.md", shapes_gallery(book / "gallery", profile))
    atomic_write_text(book / "chapter_overview.md",
                      overview_markdown(chapter_overview(profile, dataset), profile, dataset))
    toc = yaml.safe_load((repo_root() / "_toc.yml").read_text(encoding="utf-8"))
    out = book / "_toc.yml"
    atomic_write_text(out, yaml.safe_dump(_toc_entries(toc), sort_keys=False))
    return out


def chapter_overview(profile: str, dataset: str) -> pd.DataFrame:
    """One row per chapter notebook: its title, the wall time of its last complete run of
    ``profile``/``dataset`` (from ``run.json``; NaN when it has not run), the device, and its
    exercises and auto-checkers (counted in the notebook)."""
    rows = []
    for chapter, path in discover_chapters().items():
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []))
        title = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
        info = {}
        run_json = results_dir(profile, dataset, chapter) / "run.json"
        if run_json.is_file():
            info = _read_run_json(run_json)
        done = info.get("status") == "complete"
        rows.append({"chapter": chapter, "title": title.group(1) if title else path.stem,
                     "minutes": round(info["wall_s"] / 60, 1) if done else float("nan"),
                     "device": info.get("device", "") if done else "",
                     "exercises": len(re.findall(r"\{exercise\}", text)),
                     "checkers": ", ".join(sorted(set(re.findall(r"\bcheck_\w+", text))))})
    return pd.DataFrame(rows)


def overview_markdown(df: pd.DataFrame, profile: str, dataset: str) -> str:
    """The chapter overview as a Markdown table (the teaching page includes it)."""
    lines = [f"| chapter | wall time, `{profile}` profile on {dataset} (min) | device | "
             "exercises | auto-checkers in `xmrlib.exercises` |", "|---|---|---|---|---|"]
    for r in df.itertuples():
        minutes = "not run" if pd.isna(r.minutes) else f"{r.minutes:.1f}"
        checkers = ", ".join(f"`{c}`" for c in r.checkers.split(", ") if c) or "-"
        lines.append(f"| {r.title} | {minutes} | {r.device or '-'} | {r.exercises} | {checkers} |")
    return "\n".join(lines) + "\n"


def shapes_gallery(out_dir: Path, profile: str, n: int = 6) -> str:
    """Copy ``n`` rendered Shapes test scenes (binding twins side by side when the data has
    groups) into ``out_dir``; return a Markdown table of them with their five captions (the
    datasets page includes it)."""
    import numpy as np

    from xmrlib.data import get_dataset, load_precomp

    data = load_precomp(get_dataset("shapes", profile=profile), "test")
    if data.image_paths is None:
        raise ReproduceError(f"{data.root}: the Shapes test split has no rendered images")
    order = (np.argsort(data.groups, kind="stable") if data.groups is not None
             else np.arange(len(data.images)))
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["| scene | group | its five captions |", "|---|---|---|"]
    for i in order[:n]:
        shutil.copy2(data.image_paths[i], out_dir / f"scene_{i}.png")
        cpi = data.captions_per_image
        caps = "<br>".join(data.captions[cpi * i: cpi * (i + 1)])
        group = "-" if data.groups is None else str(int(data.groups[i]))
        lines.append(f"| ![scene {i}](gallery/scene_{i}.png) | {group} | {caps} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- evaluate

def evaluate_run(run_dir: str | Path, dataset: str, data_root: str | Path | None = None,
                 protocol: str = "1k", device: str = "auto", profile: str = "default",
                 split: str = "test") -> dict[str, float]:
    """Evaluate the best checkpoint of a training run folder (``model_best.pt``, written by
    :func:`xmrlib.train.fit`) on ``split`` of a dataset with one of the protocols."""
    _check_profile_dataset(profile, dataset)
    if not (Path(run_dir) / "model_best.pt").exists():
        raise ReproduceError(f"--run-dir {run_dir}: no model_best.pt (expected a run folder "
                             "written by xmrlib.train.fit, e.g. under build/runs/)")
    folder = resolve_data_root(dataset, data_root)
    from xmrlib.data import get_dataset, load_precomp
    from xmrlib.evaluation import evaluate
    from xmrlib.train import load_run
    from xmrlib.utils import resolve_device

    resolve_device(device)  # an unavailable device fails before anything is loaded
    data = load_precomp(folder or get_dataset("shapes", profile=profile), split)
    model = load_run(run_dir, device=device)
    return evaluate(model, data, protocol=protocol, device=device)


# --------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xmrlib.reproduce", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapter notebooks and collect their results")
    run.add_argument("--profile", required=True)
    run.add_argument("--dataset", default="shapes")
    run.add_argument("--data-root", default=None)
    run.add_argument("--device", default="auto")
    run.add_argument("--chapters", nargs="+", default=None, metavar="NN")
    run.add_argument("-p", "--param", nargs="+", action="append", default=[],
                     metavar="NAME VALUE",
                     help="a chapter parameter: -p NAME VALUE or -p NAME=VALUE (repeatable)")
    run.add_argument("--force", action="store_true", help="re-run complete chapters")
    run.add_argument("--notebooks-dir", default=None, help="folder of NN_name.ipynb chapters")
    sub.add_parser("report", help="write results/report.md and report.csv and print them")
    book = sub.add_parser("book", help="assemble build/book/ for jupyter-book build")
    book.add_argument("--profile", required=True)
    book.add_argument("--dataset", default="shapes")
    ev = sub.add_parser("evaluate", help="evaluate a trained run folder")
    ev.add_argument("--run-dir", required=True)
    ev.add_argument("--dataset", default="shapes")
    ev.add_argument("--data-root", default=None)
    ev.add_argument("--protocol", default="1k", choices=("1k", "5k", "5fold1k"))
    ev.add_argument("--device", default="auto")
    ev.add_argument("--profile", default="default", help="Shapes size when --dataset shapes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m xmrlib.reproduce``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            params = dict(parse_param(words) for words in args.param)
            nb_dir = Path(args.notebooks_dir) if args.notebooks_dir else None
            outcomes = run_chapters(args.profile, args.dataset, args.data_root, args.device,
                                    args.chapters, params, args.force, nb_dir)
            for o in outcomes:
                print(f"  {o.chapter}: {o.status:8s} {o.wall_s:7.1f} s")
            failed = [o for o in outcomes if o.status == "failed"]
            for o in failed:
                print(f"error: {o.error}", file=sys.stderr)
            return 1 if failed else 0
        if args.command == "report":
            md, csv, _ = write_report()
            print(md.read_text(encoding="utf-8"))
            print(f"written: {md} and {csv}")
            return 0
        if args.command == "book":
            print(f"book assembled; table of contents: {assemble_book(args.profile, args.dataset)}")
            return 0
        metrics = evaluate_run(args.run_dir, args.dataset, args.data_root, args.protocol,
                               args.device, args.profile)
        print(json.dumps(metrics, indent=2))
        return 0
    except (ValueError, FileNotFoundError) as exc:  # ReproduceError, DataError, bad device ...
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

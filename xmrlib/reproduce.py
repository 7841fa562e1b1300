"""Batch reproduction of the book: the papermill runner of the chapters, run from its CLI.

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
* ``report`` writes ``results/report.md`` (the reproduction-status page: a summary with a verdict
  per paper table, then the paper's rows and ours side by side) and ``results/report.csv`` (long
  format) from the results of the committed profiles; ``run`` of such a profile rewrites them.
* ``book --profile P --dataset D`` assembles ``build/book/`` (executed chapters, the table of
  contents of what exists, the report, a Shapes gallery) for ``jupyter-book build``.
* ``evaluate --run-dir DIR --dataset D [--data-root DIR] --protocol 1k|5k|5fold1k`` evaluates a
  trained checkpoint (a run folder of :mod:`xmrlib.train`).

Chapters save results only through :func:`xmrlib.results.save_table` and
:func:`~xmrlib.results.save_metrics` (both still import from here). The report is
:mod:`xmrlib.report`, book assembly :mod:`xmrlib.book`, ``run.json``'s provenance
:mod:`xmrlib.provenance`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from xmrlib.book import assemble_book
from xmrlib.chapters import (check_profile_dataset, discover_chapters, executed_dir,
                             notebook_parameters, notebooks_dir)
from xmrlib.provenance import (data_provenance, describe_device, git_state, package_versions,
                               relative_to_build)
from xmrlib.report import REPORTED_PROFILES, write_report
from xmrlib.results import (ReproduceError, load_table, results_dir, results_root, save_metrics,
                            save_table)
from xmrlib.utils import atomic_write_json, atomic_write_text, build_dir

#: the runner's names, and the results API that chapters import from here too
__all__ = ["BASE_PARAMETERS", "KERNEL_NAME", "ReproduceError", "parse_value", "parse_param",
           "resolve_data_root", "ChapterOutcome", "run_chapters", "evaluate_run", "main",
           "save_table", "save_metrics", "load_table", "results_dir", "results_root"]

#: Parameters every chapter's ``parameters`` cell declares (CONTRIBUTING.md).
BASE_PARAMETERS = ("profile", "dataset", "data_root", "device", "seed")
KERNEL_NAME = "python3"


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


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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


def run_chapters(profile: str, dataset: str, data_root: str | Path | None = None,
                 device: str = "auto", chapters: Sequence[str] | None = None,
                 params: dict[str, Any] | None = None, force: bool = False,
                 nb_dir: Path | None = None, log=print) -> list[ChapterOutcome]:
    """Execute chapter notebooks; see the module docstring. Returns one outcome per chapter.

    Raises :class:`ReproduceError` for an unknown profile, dataset, chapter or parameter and for a
    missing data root, before anything runs.
    """
    import papermill

    check_profile_dataset(profile, dataset)
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
                "notebook": nb.name, "notebook_sha256": nb_sha, "executed_notebook": relative_to_build(executed),
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

# --------------------------------------------------------------------------- evaluate

def evaluate_run(run_dir: str | Path, dataset: str, data_root: str | Path | None = None,
                 protocol: str = "1k", device: str = "auto", profile: str = "default",
                 split: str = "test") -> dict[str, float]:
    """Evaluate the best checkpoint of a training run folder (``model_best.pt``, written by
    :func:`xmrlib.train.fit`) on ``split`` of a dataset with one of the protocols."""
    check_profile_dataset(profile, dataset)
    if not (Path(run_dir) / "model_best.pt").exists():
        raise ReproduceError(f"--run-dir {run_dir}: no model_best.pt (expected a run folder "
                             "written by xmrlib.train.fit, e.g. under build/runs/)")
    folder = resolve_data_root(dataset, data_root)
    from xmrlib.data import get_dataset, load_precomp
    from xmrlib.evaluation import evaluate
    from xmrlib.checkpoint import load_run
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
            if args.profile in REPORTED_PROFILES:  # results/report.* follow the CSVs they show
                write_report()
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

"""Batch reproduction of the book: the papermill runner of the chapters, run from its CLI.

CLI (``python -m xmrlib.reproduce``):

* ``run --profile smoke|default|full --dataset shapes|f30k_precomp|coco_precomp [--data-root DIR]
  [--device auto|cpu|cuda] [--seed N] [--chapters 01 03 ...] [-p NAME VALUE ...] [--force]
  [--jobs N]`` executes the chapter notebooks ``notebooks/NN_*.ipynb`` with papermill (kernel
  of this interpreter, ``OMP_NUM_THREADS=1``; ``--jobs N`` runs N chapters at once, each in
  its own process); ``-p NAME=VALUE`` works too. Before anything runs, bad
  input is one ``error:`` line and exit code 2: an unknown name, a ``-p`` value of another type
  than the chapter's profiles use (:func:`xmrlib.config.check_override`), and real data that
  fails :func:`xmrlib.data.validate.check_dataset` (missing splits, COCO ``testall`` not 5000
  images, NaN rows, integer features, feature sizes that differ, a malformed semantics line, a
  folder of the other data set). Executed copies go to ``build/notebooks/<profile>/<dataset>/``;
  the tables a chapter saves go to ``results/<profile>/<dataset>/<chapter>/`` with ``run.json``
  (provenance; the data by name, content fingerprints per split and vocabulary, never a machine
  path). A chapter whose results are complete for the same parameters, data content and
  notebook, and whose executed copy exists, is skipped unless ``--force``. Results are published
  atomically: a failed or killed re-run keeps the previous complete results (the failure goes to
  ``build/failed/``); training runs resume from their checkpoints.
* ``check --profile P --dataset D [--data-root DIR] [--device D] [--chapters NN ...]`` is the
  dry run of :mod:`xmrlib.preflight`: every chapter's models built, trained a few steps and
  evaluated on the device, with time and peak memory (exit code 1 if a model failed).
* ``report`` writes ``results/report.md`` (the reproduction-status page: a summary with a verdict
  per paper table, then the paper's rows and ours side by side) and ``results/report.csv`` (long
  format) from the results of the committed profiles; ``run`` of such a profile rewrites them.
* ``book --profile P --dataset D`` assembles ``build/book/`` (executed chapters, the table of
  contents of what exists, the report, a Shapes gallery) for ``jupyter-book build``.
* ``evaluate --run-dir DIR --dataset D [--data-root DIR] [--protocol 1k|5k|5fold1k]
  [--split S]`` evaluates a trained checkpoint (a run folder of :mod:`xmrlib.train`) under the
  data set's protocol (default: MS-COCO 5-fold 1K, else 1K) on the protocol's split (MS-COCO:
  ``testall``, 5000 images, checked).

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
                             notebook_parameters, notebooks_dir, reloaded_chapters)
from xmrlib.provenance import (data_provenance, describe_device, git_state, package_versions,
                               portable_path, relative_to_build)
from xmrlib.report import REPORTED_PROFILES, write_report
from xmrlib.results import (ReproduceError, load_table, results_dir, results_root, save_metrics,
                            save_table)
from xmrlib.utils import atomic_write_json, build_dir

#: the runner's names, and the results API that chapters import from here too
__all__ = ["BASE_PARAMETERS", "KERNEL_NAME", "ReproduceError", "parse_value", "parse_param",
           "resolve_data_root", "ChapterOutcome", "run_chapters", "evaluate_run", "main",
           "save_table", "save_metrics", "load_table", "results_dir", "results_root"]

#: Parameters every chapter's ``parameters`` cell declares (CONTRIBUTING.md).
BASE_PARAMETERS = ("profile", "dataset", "data_root", "device", "seed")
KERNEL_NAME = "python3"
#: the runs a chapter used, written by xmrlib.runs.note_run_use into its staging folder
RUN_LOG = "runs_used.jsonl"


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
    """Check ``--data-root`` for a real dataset: returns the folder holding ``*_ims.npy``. A
    root named after the other data set is an error naming both
    (:func:`xmrlib.data.validate.find_dataset_folder`)."""
    from xmrlib.data.precomp import REAL_DATASETS
    from xmrlib.data.validate import find_dataset_folder

    if dataset == "shapes":
        return None
    if data_root is None:
        raise ReproduceError(f"dataset {dataset!r} needs --data-root: a folder that holds "
                             f"{dataset}/ (or its files test_ims.npy, test_caps.txt) in the SCAN "
                             "precomp layout; see the book's real-data guide")
    root = Path(data_root).expanduser()
    if ((root / dataset).is_dir() or root.name in REAL_DATASETS
            or any(root.glob("*_caps.txt"))):
        return find_dataset_folder(dataset, root)
    if any(root.glob("*_ims.npy")):
        return root
    raise ReproduceError(f"--data-root {root}: neither {root / dataset} nor {root} holds "
                         f"precomp files (expected test_ims.npy and test_caps.txt)")


def check_params(params: dict[str, Any], declared: dict[str, dict[str, Any]]) -> None:
    """``-p`` values: each names a parameter some selected chapter declares (not a base one,
    which has its own option) and has the type of the values the chapter's profiles use
    (:func:`xmrlib.config.check_override`)."""
    from xmrlib.config import BASE as CHAPTER_VALUES, check_override

    selected = ", ".join(declared)
    for chapter, names in declared.items():  # without them the chapter ignores the runner's
        missing = [n for n in BASE_PARAMETERS if n not in names]
        if missing:
            raise ReproduceError(f"chapter {chapter}: its parameters cell (the code cell tagged "
                                 f"'parameters') does not declare {', '.join(missing)}"
                                 f"{'' if names else ' (no cell has the tag)'}; expected the "
                                 "base parameters of CONTRIBUTING.md")
    for name, value in params.items():
        if name in BASE_PARAMETERS:
            raise ReproduceError(f"-p {name}: set it with --{name.replace('_', '-')} instead")
        owners = [c for c, d in declared.items() if name in d]
        if not owners:
            known = sorted({n for d in declared.values() for n in d} - set(BASE_PARAMETERS))
            raise ReproduceError(f"unknown parameter {name!r} for chapter(s) {selected}:"
                                 f" known ones are {', '.join(known) or 'none'}")
        for chapter in owners:
            if chapter in CHAPTER_VALUES:
                check_override(chapter, name, value)


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


def _complete(run_json: Path, params: dict[str, Any], data: dict[str, Any], nb_sha: str,
              executed: Path) -> bool:
    """Results complete for these (recorded) parameters, data content and notebook."""
    if not run_json.exists() or not executed.exists():
        return False
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return (info.get("status") == "complete" and info.get("parameters") == params
            and info.get("data") == data and info.get("notebook_sha256") == nb_sha)


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


def _publish(staged: Path, final: Path, info: dict[str, Any]) -> list[str]:
    """Swap in the complete results of a chapter: its CSVs from ``staged`` and ``run.json``
    (``info`` with ``files``) are written into a hidden sibling ``.NN.new-*`` of ``final``,
    which then replaces ``final`` by two renames; the previous results stay whole until then."""
    final.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    new, old = (final.parent / f".{final.name}.{kind}-{token}" for kind in ("new", "old"))
    new.mkdir()
    names = []
    for src in sorted(staged.glob("*.csv")):
        shutil.copyfile(src, new / src.name)
        names.append(src.name)
    info["files"] = names
    atomic_write_json(new / "run.json", info)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
    return names


def _recover(final: Path) -> None:
    """Tidy what a kill during :func:`_publish` left: restore the previous results when the
    swap was cut between its renames, remove half-written ones."""
    for leftover in sorted(final.parent.glob(f".{final.name}.*")):
        if leftover.name.startswith(f".{final.name}.old-") and not final.exists():
            os.replace(leftover, final)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _execute(nb: Path, out: Path, params: dict[str, Any]) -> None:
    """Execute notebook ``nb`` with papermill into ``out`` (kernel of this interpreter)."""
    import papermill

    papermill.execute_notebook(str(nb), str(out), parameters=params, kernel_name=KERNEL_NAME,
                               progress_bar=False, cwd=str(nb.parent))


def check_data(dataset: str, folder: Path | None) -> None:
    """A real-data folder as a whole, before anything trains
    (:func:`xmrlib.data.validate.check_dataset`: splits, sizes of the protocol splits, dtype,
    finite sample, feature sizes, semantics lines, the data set it belongs to)."""
    if folder is not None:
        from xmrlib.data.validate import check_dataset

        check_dataset(dataset, folder)


def run_chapters(profile: str, dataset: str, data_root: str | Path | None = None,
                 device: str = "auto", chapters: Sequence[str] | None = None,
                 params: dict[str, Any] | None = None, force: bool = False,
                 nb_dir: Path | None = None, log=print, seed: int | None = None,
                 jobs: int = 1) -> list[ChapterOutcome]:
    """Execute chapter notebooks; see the module docstring. Returns one outcome per chapter.

    Raises :class:`ReproduceError` (or :class:`~xmrlib.data.precomp.DataError`) for an unknown
    profile, dataset, chapter or parameter, a ``-p`` value of the wrong type, a missing data
    root and data that fails the checks of :mod:`xmrlib.data.validate`, before anything runs.
    ``seed`` (None: each chapter's default) is the ``seed`` parameter of every chapter.
    ``jobs`` > 1 executes that many chapters at once, each in its own process (see
    :func:`_run_parallel`).
    """
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
    if jobs < 1:
        raise ReproduceError(f"--jobs {jobs}: expected a positive number of chapters at once")
    params = dict(params or {})
    declared = {c: notebook_parameters(available[c]) for c in selected}
    check_params(params, declared)
    check_data(dataset, folder)

    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the kernels
    common = {"profile": profile, "dataset": dataset, "force": force,
              "device_name": describe_device(device),
              "data_info": data_provenance(dataset, folder, profile), "git": git_state(),
              "versions": package_versions()}
    tasks = []
    for chapter in selected:
        nb_params = {"profile": profile, "dataset": dataset,
                     "data_root": str(folder) if folder else None, "device": device}
        nb_params.update({k: v for k, v in params.items() if k in declared[chapter]})
        nb_params["seed"] = declared[chapter].get("seed", 0) if seed is None else seed
        tasks.append(ChapterTask(chapter, available[chapter], nb_params,
                                 {**nb_params, "data_root": portable_path(folder) if folder
                                  else None}, **common))
    if jobs == 1 or len(tasks) < 2:
        return [run_chapter(task, log) for task in tasks]
    return _run_parallel(tasks, jobs)


@dataclass
class ChapterTask:
    """Everything one chapter's execution needs (picklable: it goes to a worker process)."""

    chapter: str
    notebook: Path
    nb_params: dict[str, Any]        # the parameters papermill injects
    recorded: dict[str, Any]         # the same as run.json records them (no machine path)
    profile: str
    dataset: str
    force: bool
    device_name: str
    data_info: dict[str, Any]
    git: dict[str, Any]
    versions: dict[str, str]


def _run_parallel(tasks: list[ChapterTask], jobs: int) -> list[ChapterOutcome]:
    """Execute ``tasks`` ``jobs`` at a time, each chapter in a fresh process (its own
    ``XMR_RESULTS_DIR``), in the order of :func:`parallel_order`; a chapter that reloads other
    chapters' runs starts when those chapters have finished, so it never waits on a run lock
    nor trains another chapter's run. Chapters that share a training run otherwise (a run
    named in two chapters) cannot train it twice: :func:`xmrlib.runs.run_lock` makes the
    second wait for the first and reload its run. Returns the outcomes in the tasks' order."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waits_for = _reloads(tasks)
    pending, done = parallel_order(tasks), set()
    outcomes: dict[str, ChapterOutcome] = {}
    running: dict[Any, ChapterTask] = {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            ready = [t for t in pending if waits_for[t.chapter] <= done]
            if not ready and not running:  # chapters reloading each other: start one anyway
                ready = pending[:1]
            for task in ready[:jobs - len(running)]:
                pending.remove(task)
                running[pool.submit(run_chapter, task)] = task
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                outcomes[task.chapter] = future.result()
                done.add(task.chapter)
    return [outcomes[t.chapter] for t in tasks]


def parallel_order(tasks: list[ChapterTask]) -> list[ChapterTask]:
    """Start order of a parallel run: the longest chain of work first. A chapter's chain is its
    own cost (:func:`chapter_cost` of its previous results) plus the longest chain of the chapters
    that reload its runs (:func:`xmrlib.chapters.reloaded_chapters`), so the chapters whose runs
    others reload start early and a chapter that reloads (07) comes last. Ties: chapter order."""
    reloads = _reloads(tasks)
    cost = {t.chapter: _previous_cost(t) for t in tasks}
    chains: dict[str, float] = {}

    def chain(chapter: str, seen: frozenset = frozenset()) -> float:
        if chapter not in chains:
            after = [c for c, before in reloads.items() if chapter in before and c not in seen]
            chains[chapter] = cost[chapter] + max((chain(c, seen | {chapter}) for c in after),
                                                  default=0.0)
        return chains[chapter]

    return sorted(tasks, key=lambda t: (-chain(t.chapter), t.chapter))


def _reloads(tasks: list[ChapterTask]) -> dict[str, set[str]]:
    """For each task, the other tasks' chapters whose runs it reloads."""
    selected = {t.chapter for t in tasks}
    return {t.chapter: reloaded_chapters(t.notebook) & selected for t in tasks}


def _previous_cost(task: ChapterTask) -> float:
    """Cost in seconds of the chapter's previous results for its profile and data set
    (:func:`chapter_cost`; results written before it: their wall time; 0: none)."""
    try:
        info = json.loads((results_dir(task.profile, task.dataset, task.chapter)
                           / "run.json").read_text(encoding="utf-8"))
        return float(info.get("cost_s") or info.get("wall_s") or 0.0)
    except (OSError, ValueError):
        return 0.0


def chapter_cost(wall: float, run_log: Path, chapter: str) -> float:
    """What a chapter costs when it trains its own runs: its wall time plus the training seconds
    of the runs it reloaded instead (from the run log of :func:`xmrlib.runs.note_run_use`),
    counting its own runs only (not the runs of other chapters that it reloads by name), once
    each, and not a run it trained itself earlier in the same execution."""
    entries = []
    if run_log.exists():
        entries = [json.loads(line) for line in run_log.read_text(encoding="utf-8").splitlines()
                   if line.strip()]
    trained = {e["run"] for e in entries if not e["reloaded"]}
    reloaded = {e["run"]: e["seconds"] or 0.0 for e in entries
                if e["reloaded"] and e["owner"] in (None, chapter) and e["run"] not in trained}
    return wall + sum(reloaded.values())


def run_chapter(task: ChapterTask, log=None) -> ChapterOutcome:
    """Execute one chapter and publish its results (or record its failure); see
    :func:`run_chapters`. ``log`` None prints with the chapter's tag, flushed (workers)."""
    if log is None:
        def log(message: str) -> None:
            print(message, flush=True)
    chapter, nb, profile, dataset = task.chapter, task.notebook, task.profile, task.dataset
    nb_sha = _file_sha(nb)
    executed = executed_dir(profile, dataset) / nb.name
    final = results_dir(profile, dataset, chapter)
    _recover(final)
    if not task.force and _complete(final / "run.json", task.recorded, task.data_info, nb_sha,
                                    executed):
        log(f"[{chapter}] skipped: results complete for these parameters (use --force)")
        return ChapterOutcome(chapter, "skipped", executed=executed)
    # the previous results stay until this run completes (_publish); the chapter writes
    # its tables into a staging tree and papermill its executed copy beside the final one
    staging = build_dir() / "staging" / uuid.uuid4().hex
    running = executed.with_name(f".{nb.stem}.running-{staging.name[:8]}.ipynb")
    previous = os.environ.get("XMR_RESULTS_DIR")
    os.environ["XMR_RESULTS_DIR"] = str(staging)
    staging.mkdir(parents=True)
    os.environ["XMR_RUN_LOG"] = str(staging / RUN_LOG)  # xmrlib.runs.note_run_use
    executed.parent.mkdir(parents=True, exist_ok=True)
    start, t0 = datetime.now(timezone.utc), time.perf_counter()
    log(f"[{chapter}] running {nb.name} ({profile}, {dataset})")
    error = None
    failed_copy = build_dir() / "failed" / profile / dataset / nb.name
    try:
        _execute(nb, running, task.nb_params)
    except Exception as exc:  # noqa: BLE001 - any failure is reported and the others run
        failed_copy.parent.mkdir(parents=True, exist_ok=True)
        if running.exists():
            os.replace(running, failed_copy)
        error = _failure_message(chapter, exc, nb, failed_copy)
    finally:
        os.environ.pop("XMR_RUN_LOG", None)
        if previous is None:
            os.environ.pop("XMR_RESULTS_DIR", None)
        else:
            os.environ["XMR_RESULTS_DIR"] = previous
    wall = time.perf_counter() - t0
    info = {"status": "failed" if error else "complete", "chapter": chapter,
            "notebook": nb.name, "notebook_sha256": nb_sha,
            "executed_notebook": relative_to_build(executed), "parameters": task.recorded,
            "seed": task.nb_params["seed"], "profile": profile, "dataset": dataset,
            "git": task.git, "packages": task.versions, "device": task.device_name,
            "python": platform.python_version(), "platform": platform.platform(),
            "start": start.isoformat(), "end": datetime.now(timezone.utc).isoformat(),
            "wall_s": round(wall, 2),
            "cost_s": round(chapter_cost(wall, staging / RUN_LOG, chapter), 2),
            "data": task.data_info, "files": [], "error": error}
    failed_json = build_dir() / "failed" / profile / dataset / f"{chapter}.json"
    if error is None:
        _publish(staging / profile / dataset / chapter, final, info)
        if running.exists():
            os.replace(running, executed)
        failed_json.unlink(missing_ok=True)
        log(f"[{chapter}] complete in {wall:.1f} s: {len(info['files'])} table(s)")
    else:
        info["executed_notebook"] = relative_to_build(failed_copy)
        atomic_write_json(failed_json, info)
        kept = " (the previous results are kept)" if (final / "run.json").exists() else ""
        log(f"[{chapter}] FAILED after {wall:.1f} s{kept}: {error}")
    shutil.rmtree(staging, ignore_errors=True)
    return ChapterOutcome(chapter, info["status"], wall, error, executed, info["files"])

# --------------------------------------------------------------------------- evaluate

def evaluate_run(run_dir: str | Path, dataset: str, data_root: str | Path | None = None,
                 protocol: str | None = None, device: str = "auto", profile: str = "default",
                 split: str | None = None) -> dict[str, float]:
    """Evaluate the best checkpoint of a training run folder (``model_best.pt``, written by
    :func:`xmrlib.train.fit`) on ``split`` of a dataset with one of the protocols.

    ``protocol`` None: the data set's (Flickr30K and Shapes 1K, MS-COCO 5-fold 1K); ``split``
    None: the protocol's (MS-COCO's both on ``testall``). A real data set's protocol on another
    split or another number of images, and features of another size than the model's, are
    errors naming the file, before anything is scored.
    """
    from xmrlib.config import chapter_config
    from xmrlib.data.validate import check_protocol_split, check_split, protocol_split

    check_profile_dataset(profile, dataset)
    if not (Path(run_dir) / "model_best.pt").exists():
        raise ReproduceError(f"--run-dir {run_dir}: no model_best.pt (expected a run folder "
                             "written by xmrlib.train.fit, e.g. under build/runs/)")
    folder = resolve_data_root(dataset, data_root)
    protocol = protocol or chapter_config("common", profile, dataset=dataset)["protocol"]
    split = split or protocol_split(dataset, protocol)
    if folder is not None:
        want = protocol_split(dataset, protocol)
        if split != want:  # named before the split is read: it may not even exist
            check_protocol_split(dataset, protocol, split, -1, folder)
        check_protocol_split(dataset, protocol, split, check_split(folder, split).n_images,
                             folder)
    from xmrlib.checkpoint import load_run
    from xmrlib.data import get_dataset, load_precomp
    from xmrlib.evaluation import evaluate
    from xmrlib.utils import resolve_device

    resolve_device(device)  # an unavailable device fails before anything is loaded
    data = load_precomp(folder or get_dataset("shapes", profile=profile), split)
    model = load_run(run_dir, device=device)
    want_dim = getattr(model, "config", {}).get("img_dim")
    if want_dim is not None and int(data.images.shape[-1]) != want_dim:
        raise ReproduceError(f"{data.root / f'{split}_ims.npy'}: features of size "
                             f"{data.images.shape[-1]}, but the model in {run_dir} was trained "
                             f"on features of size {want_dim}: evaluate it on the features it "
                             "was trained with")
    return evaluate(model, data, protocol=protocol, device=device)


# --------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xmrlib.reproduce",
                                description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapter notebooks and collect their results")
    run.add_argument("--profile", required=True)
    run.add_argument("--dataset", default="shapes")
    run.add_argument("--data-root", default=None)
    run.add_argument("--device", default="auto")
    run.add_argument("--seed", type=int, default=None,
                     help="the seed parameter of every chapter (default: each chapter's)")
    run.add_argument("--chapters", nargs="+", default=None, metavar="NN")
    run.add_argument("-p", "--param", nargs="+", action="append", default=[],
                     metavar="NAME VALUE",
                     help="a chapter parameter: -p NAME VALUE or -p NAME=VALUE (repeatable)")
    run.add_argument("--force", action="store_true", help="re-run complete chapters")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="chapters executed at once, each in its own process on one CPU "
                          "thread (default 1; make book uses 2)")
    run.add_argument("--notebooks-dir", default=None, help="folder of NN_name.ipynb chapters")
    check = sub.add_parser("check", help="dry run: build, train a few steps and evaluate "
                           "every chapter's models on the device (xmrlib.preflight)")
    check.add_argument("--profile", required=True)
    check.add_argument("--dataset", default="shapes")
    check.add_argument("--data-root", default=None)
    check.add_argument("--device", default="auto")
    check.add_argument("--chapters", nargs="+", default=None, metavar="NN")
    sub.add_parser("report", help="write results/report.md and report.csv and print them")
    book = sub.add_parser("book", help="assemble build/book/ for jupyter-book build")
    book.add_argument("--profile", required=True)
    book.add_argument("--dataset", default="shapes")
    ev = sub.add_parser("evaluate", help="evaluate a trained run folder")
    ev.add_argument("--run-dir", required=True)
    ev.add_argument("--dataset", default="shapes")
    ev.add_argument("--data-root", default=None)
    ev.add_argument("--protocol", default=None, choices=("1k", "5k", "5fold1k"),
                    help="default: the data set's (MS-COCO 5fold1k, else 1k)")
    ev.add_argument("--split", default=None,
                    help="default: the protocol's (MS-COCO testall, else test)")
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
                                    args.chapters, params, args.force, nb_dir, seed=args.seed,
                                    jobs=args.jobs)
            for o in outcomes:
                print(f"  {o.chapter}: {o.status:8s} {o.wall_s:7.1f} s")
            if args.profile in REPORTED_PROFILES:  # results/report.* follow the CSVs they show
                write_report()
            failed = [o for o in outcomes if o.status == "failed"]
            for o in failed:
                print(f"error: {o.error}", file=sys.stderr)
            return 1 if failed else 0
        if args.command == "check":
            from xmrlib.preflight import markdown, run_checks

            check_profile_dataset(args.profile, args.dataset)
            check_data(args.dataset, resolve_data_root(args.dataset, args.data_root))
            rows = run_checks(args.profile, args.dataset, args.data_root, args.device,
                              args.chapters)
            print(markdown(rows))
            return 1 if any(r["error"] for r in rows) else 0
        if args.command == "report":
            md, csv, _ = write_report()
            print(md.read_text(encoding="utf-8"))
            print(f"written: {md} and {csv}")
            return 0
        if args.command == "book":
            print(f"book assembled; table of contents: {assemble_book(args.profile, args.dataset)}")
            return 0
        metrics = evaluate_run(args.run_dir, args.dataset, args.data_root, args.protocol,
                               args.device, args.profile, args.split)
        print(json.dumps(metrics, indent=2))
        return 0
    except (ValueError, FileNotFoundError) as exc:  # ReproduceError, DataError, bad device ...
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

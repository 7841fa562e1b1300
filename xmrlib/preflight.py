"""A dry run of every chapter's models on a device, in seconds, before a long run.

``python -m xmrlib.reproduce check --profile full --dataset f30k_precomp --data-root DIR
--device cuda`` builds each chapter's models with the profile's values on that data set, as the
chapter builds them (the named runs of :mod:`xmrlib.chapter_runs`: the data set's paper values,
its vocabulary rule, the chapter's image subsets), puts them on the device, trains a few steps through :func:`xmrlib.train.fit` (the code
path of a real run: device placement, autocast, gathering of batches, the optimiser) on the
first batches of the real training split, then evaluates on the first images of the test split
with :func:`xmrlib.evaluation.evaluate`, and reports time and peak memory (the CUDA allocator's
on a GPU, :class:`xmrlib.costs.PeakMemory`). A model that fails is reported with its error and
the others still run. Nothing is written outside a temporary folder; the recalls of a few
steps mean nothing and are not shown.

Chapter 01 trains nothing; chapter 07 reuses the runs of chapters 02-05 (and SCAN i-t, which
chapter 04 also trains), so both have no model of their own to check.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

#: the runs of each chapter that the check builds (names of :data:`xmrlib.chapter_runs.RUNS`;
#: chapter 06's A3VSE trains on a sparse split, outside that registry)
RUNS: dict[str, tuple[str, ...]] = {
    "02": ("Kiros VSE",), "03": ("VSE++",),
    "04": ("SCAN t2i LSE", "SCAN i2t LSE", "Sum-Max t2i"), "05": ("MMCA",), "06": ("A3VSE",)}
#: chapters with models of their own, in book order
CHAPTERS = tuple(RUNS)


@dataclass
class Check:
    """One model of one chapter: how to build it and how to batch its training data."""

    chapter: str
    label: str
    build: Callable[[], tuple[str, dict[str, Any], Any]]  # -> (model name, config, TrainConfig)
    loader: Callable[[Any, Any, Any], Any]  # (model, data, TrainConfig) -> training batches
    extra: dict[str, Any] = field(default_factory=dict)


def _registry_check(chapter: str, name: str, profile: str, dataset: str, train: Any, dev: Any,
                    seed: int) -> Check:
    """A run of :data:`xmrlib.chapter_runs.RUNS`, built exactly as its chapter builds it (the
    profile's values on ``dataset``, the vocabulary rule, the chapter's image subsets)."""
    from xmrlib.chapter_runs import chapter_run_spec
    from xmrlib.data import make_loader

    def build() -> tuple[str, dict[str, Any], Any]:
        return chapter_run_spec(chapter, name, train, dev, profile, seed=seed, dataset=dataset)

    def loader(model: Any, data: Any, cfg: Any) -> Any:
        return make_loader(data, model.tokenize, cfg.batch_size, seed=seed)

    return Check(chapter, name, build, loader, extra={"text_features": chapter == "05"})


def _a3vse_check(profile: str, dataset: str, train: Any, seed: int) -> Check:
    """Chapter 06's A3VSE at its ablation setting, on the sparse split of the training split."""
    from xmrlib.config import chapter_config
    from xmrlib.data.sparse import SparseLoader, sparse_split
    from xmrlib.runs import chapter_train_config
    from xmrlib.vocab import Vocabulary

    cfg = chapter_config("06", profile, dataset=dataset)
    holder: dict[str, Any] = {}

    def build() -> tuple[str, dict[str, Any], Any]:
        split = holder["split"] = sparse_split(train, *cfg["ablation_setting"], seed)
        config = dict(vocab=Vocabulary.build(split.vocabulary_texts("regional")).to_dict(),
                      img_dim=int(train.images.shape[-1]),
                      **{k: cfg[k] for k in ("embed_size", "word_dim", "disc_hidden",
                                             "adv_scale", "max_violation")})
        return "a3vse", config, chapter_train_config("06", profile, seed=seed, dataset=dataset)

    def loader(model: Any, data: Any, tcfg: Any) -> Any:  # the sparse split of the whole split
        return SparseLoader(holder["split"], model.tokenize, tcfg.batch_size, "regional",
                            seed=seed, steps_per_epoch=cfg["steps_per_epoch"])

    return Check("06", "A3VSE", build, loader)


def chapter_checks(chapters: list[str], profile: str, train: Any, dev: Any = None,
                   seed: int = 0, dataset: str = "shapes") -> list[Check]:
    """The models of ``chapters`` (among :data:`CHAPTERS`) with the profile's settings on
    ``dataset``; vocabularies and feature sizes come from the training split ``train`` (``dev``:
    the split the chapters' dev subsets are cut from; the check evaluates on the test split)."""
    checks: list[Check] = []
    for chapter in (c for c in CHAPTERS if c in chapters):
        if chapter == "06":
            checks.append(_a3vse_check(profile, dataset, train, seed))
        else:
            checks += [_registry_check(chapter, name, profile, dataset, train,
                                       train if dev is None else dev, seed)
                       for name in RUNS[chapter]]
    return checks


def _text_features(data: list[Any], device: torch.device) -> None:
    """Register frozen MiniLM features of the captions the check reads (MMCA's chapter does the
    same for its splits, cached on disk; here they are computed on the device, not cached)."""
    from xmrlib import text_features as tf

    tf.register_store(tf.build_store([c for d in data for c in d.captions], device=device))


def run_check(check: Check, train: Any, test: Any, device: torch.device, steps: int = 2,
              eval_images: int = 50) -> dict[str, Any]:
    """Build, train ``steps`` steps and evaluate one model; a dict row (``error`` on failure)."""
    from xmrlib.costs import PeakMemory, count_parameters
    from xmrlib.data import first_images
    from xmrlib.evaluation import evaluate
    from xmrlib.models import build_model
    from xmrlib.train import fit

    row: dict[str, Any] = {"chapter": check.chapter, "model": check.label}
    test = first_images(test, eval_images)
    try:
        name, config, cfg = check.build()
        row["batch_size"] = cfg.batch_size
        # the first images of the training split, enough for ``steps`` batches of captions
        sub = first_images(train, -(-steps * cfg.batch_size // train.captions_per_image))
        torch.manual_seed(cfg.seed)
        model = build_model(name, **config)
        row["params"] = count_parameters(model)
        loader = check.loader(model, sub, cfg)
        if check.extra.get("text_features"):
            _text_features([sub, test], device)
        with tempfile.TemporaryDirectory() as tmp, PeakMemory(device) as mem:
            t0 = time.perf_counter()
            result = fit(model, loader, None, cfg, Path(tmp) / "run",
                         resume=False, device=device, progress=False, max_steps=steps)
            row["train_s"] = time.perf_counter() - t0
        row["train_steps"] = len(result.history["steps"])
        row["loss"] = result.history["steps"][-1]["loss"]
        row["train_peak_mib"] = mem.mib
        with PeakMemory(device) as mem, torch.no_grad():
            t0 = time.perf_counter()
            evaluate(result.model, test, protocol="1k",
                     batch_size=cfg.eval_batch_size, device=device)
            row["eval_s"] = time.perf_counter() - t0
        row["eval_images"], row["eval_peak_mib"] = len(test.images), mem.mib
        row["memory"] = mem.kind
        row["error"] = ""
    except Exception as exc:  # noqa: BLE001 - reported, and the next model still runs
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()
    finally:
        if check.extra.get("text_features"):
            from xmrlib import text_features as tf

            tf.clear_stores()
    return row


def run_checks(profile: str, dataset: str, data_root: str | Path | None = None,
               device: str = "auto", chapters: list[str] | None = None, steps: int = 2,
               eval_images: int = 50, seed: int = 0,
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Check the models of ``chapters`` (default: all) on ``device``; returns the rows."""
    from xmrlib.config import chapter_config
    from xmrlib.data import get_dataset, load_precomp
    from xmrlib.utils import device_name, resolve_device, set_device

    dev = resolve_device(device)  # a device that is not there fails before anything is read
    set_device(dev)
    chapter_config("02", profile, dataset=dataset)  # an unknown profile or data set too
    unknown = sorted(set(chapters or ()) - {"01", "07", *CHAPTERS})
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}: expected some of 01-07")
    wanted = [c for c in CHAPTERS if chapters is None or c in chapters]
    root = get_dataset(dataset, data_root=data_root, profile=profile, seed=seed)
    test_split = chapter_config("common", profile, dataset=dataset)["test_split"]  # COCO: testall
    train, dev_split, test = (load_precomp(root, s) for s in ("train", "dev", test_split))
    log(f"check: {dataset} ({len(train.images)} train / {len(test.images)} test images, "
        f"features {tuple(train.images.shape[1:])}), profile {profile}, device "
        f"{device_name(dev)}")
    rows = []
    for check in chapter_checks(wanted, profile, train, dev_split, seed, dataset):
        row = run_check(check, train, test, dev, steps, eval_images)
        rows.append(row)
        status = "FAILED " + row["error"] if row["error"] else (
            f"ok: {row['train_steps']} steps {row['train_s']:.1f} s, peak "
            f"{row['train_peak_mib']:.0f} MiB; evaluation of {row['eval_images']} images "
            f"{row['eval_s']:.1f} s, peak {row['eval_peak_mib']:.0f} MiB")
        log(f"  {row['chapter']} {row['model']}: {status}")
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (memory: the CUDA allocator's peak on a GPU)."""
    kind = next((r["memory"] for r in rows if r.get("memory")), "")
    lines = [f"| chapter | model | params (M) | batch | train steps | train (s) | train peak "
             f"(MiB, {kind}) | eval images | eval (s) | eval peak (MiB) | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['chapter']} | {r['model']} | "
                         f"{r.get('params', 0) / 1e6:.2f} | {r.get('batch_size', '')} | "
                         "| | | | | | "
                         f"FAILED: {r['error'][:200]} |")
            continue
        lines.append(f"| {r['chapter']} | {r['model']} | {r['params'] / 1e6:.2f} | "
                     f"{r['batch_size']} | {r['train_steps']} | {r['train_s']:.2f} | "
                     f"{r['train_peak_mib']:.0f} | {r['eval_images']} | {r['eval_s']:.2f} | "
                     f"{r['eval_peak_mib']:.0f} | ok |")
    return "\n".join(lines)

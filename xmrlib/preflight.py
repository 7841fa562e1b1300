"""A dry run of every chapter's models on a device, in seconds, before a long run.

``python -m xmrlib.reproduce check --profile full --dataset f30k_precomp --data-root DIR
--device cuda`` builds each chapter's models with the profile's settings, as the chapter builds
them, puts them on the device, trains a few steps through :func:`xmrlib.train.fit` (the code
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

#: chapters with models of their own, in book order
CHAPTERS = ("02", "03", "04", "05", "06")


@dataclass
class Check:
    """One model of one chapter: how to build it, its training loader and settings."""

    chapter: str
    label: str
    build: Callable[[], tuple[str, dict[str, Any]]]   # -> (model name, constructor config)
    loader: Callable[[Any, Any], Any]                  # (model, data) -> training batches
    train_config: Any                                  # xmrlib.train.TrainConfig
    extra: dict[str, Any] = field(default_factory=dict)


def _dual_checks(chapter: str, profile: str, train: Any, seed: int) -> list[Check]:
    from xmrlib.config import chapter_config
    from xmrlib.data import make_loader
    from xmrlib.models.vsepp import VSEPP_FLAGS
    from xmrlib.train import chapter_model_config, chapter_train_config

    cfg = chapter_config(chapter, profile)
    name, flags = ("vse", {}) if chapter == "02" else ("vsepp", VSEPP_FLAGS)
    tcfg = chapter_train_config(chapter, profile, seed=seed)
    label = "Kiros VSE" if chapter == "02" else "VSE++"

    def build() -> tuple[str, dict[str, Any]]:
        return name, chapter_model_config(chapter, profile, train, **flags,
                                          **{k: cfg[k] for k in ("embed_size", "word_dim",
                                                                 "margin")})

    return [Check(chapter, label, build,
                  lambda m, d: make_loader(d, m.tokenize, tcfg.batch_size, seed=seed), tcfg)]


def _scan_checks(profile: str, train: Any, seed: int) -> list[Check]:
    from xmrlib.config import chapter_config
    from xmrlib.data import make_loader
    from xmrlib.train import chapter_model_config, chapter_train_config

    cfg = chapter_config("04", profile)
    tcfg = chapter_train_config("04", profile, seed=seed)
    checks = []
    for name, attention in (("scan", "t2i"), ("scan", "i2t"), ("summax", "t2i")):
        def build(name: str = name, attention: str = attention) -> tuple[str, dict[str, Any]]:
            return name, chapter_model_config(
                "04", profile, train, attention=attention, agg="LSE",
                lambda_softmax=cfg[f"lambda_softmax_{attention}"],
                lambda_lse=cfg[f"lambda_lse_{attention}"], warmup=cfg["warmup"],
                **{k: cfg[k] for k in ("embed_size", "word_dim", "margin")})

        label = f"SCAN {attention} LSE" if name == "scan" else f"Sum-Max {attention}"
        checks.append(Check("04", label, build,
                            lambda m, d: make_loader(d, m.tokenize, tcfg.batch_size, seed=seed),
                            tcfg))
    return checks


def _mmca_checks(profile: str, train: Any, seed: int) -> list[Check]:
    from xmrlib.config import chapter_config
    from xmrlib.data import make_loader
    from xmrlib.train import TrainConfig

    cfg = chapter_config("05", profile)
    tcfg = TrainConfig(epochs=cfg["epochs"], lr=cfg["lr"], lr_update=cfg["lr_update"],
                       batch_size=cfg["batch_size"], seed=seed, eval_protocol="1k",
                       eval_batch_size=cfg["eval_batch_size"])

    def build() -> tuple[str, dict[str, Any]]:
        return "mmca", dict(img_dim=int(train.images.shape[-1]), embed_size=cfg["embed_size"],
                            heads=cfg["heads"], alpha=cfg["alpha"],
                            max_violation=cfg["max_violation"])

    return [Check("05", "MMCA", build,
                  lambda m, d: make_loader(d, m.tokenize, tcfg.batch_size, seed=seed), tcfg,
                  extra={"text_features": True})]


def _a3vse_checks(profile: str, train: Any, seed: int) -> list[Check]:
    from xmrlib.config import chapter_config
    from xmrlib.data.sparse import SparseLoader, sparse_split
    from xmrlib.train import TrainConfig
    from xmrlib.vocab import Vocabulary

    cfg = chapter_config("06", profile)
    tcfg = TrainConfig(epochs=cfg["epochs"], lr=cfg["lr"], lr_update=cfg["lr_update"],
                       batch_size=cfg["batch_size"], seed=seed, eval_protocol=cfg["protocol"],
                       eval_batch_size=cfg["eval_batch_size"])
    fraction, captions = cfg["ablation_setting"]
    holder: dict[str, Any] = {}

    def build() -> tuple[str, dict[str, Any]]:
        split = holder["split"] = sparse_split(train, fraction, captions, seed)
        return "a3vse", dict(vocab=Vocabulary.build(split.vocabulary_texts("regional")).to_dict(),
                             img_dim=int(train.images.shape[-1]), embed_size=cfg["embed_size"],
                             word_dim=cfg["word_dim"], disc_hidden=cfg["disc_hidden"],
                             adv_scale=cfg["adv_scale"], max_violation=cfg["max_violation"])

    def loader(model: Any, data: Any) -> Any:  # the sparse split of the whole training split
        return SparseLoader(holder["split"], model.tokenize, tcfg.batch_size, "regional",
                            seed=seed, steps_per_epoch=cfg["steps_per_epoch"])

    return [Check("06", "A3VSE", build, loader, tcfg)]


def chapter_checks(chapters: list[str], profile: str, train: Any, seed: int = 0) -> list[Check]:
    """The models of ``chapters`` (among :data:`CHAPTERS`) with the profile's settings; their
    vocabularies and feature sizes come from the whole training split ``train``."""
    checks: list[Check] = []
    for chapter in chapters:
        if chapter in ("02", "03"):
            checks += _dual_checks(chapter, profile, train, seed)
        elif chapter == "04":
            checks += _scan_checks(profile, train, seed)
        elif chapter == "05":
            checks += _mmca_checks(profile, train, seed)
        elif chapter == "06":
            checks += _a3vse_checks(profile, train, seed)
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

    row: dict[str, Any] = {"chapter": check.chapter, "model": check.label,
                           "batch_size": check.train_config.batch_size}
    test = first_images(test, eval_images)
    # the first images of the training split, enough for ``steps`` batches of captions
    sub = first_images(train, -(-steps * check.train_config.batch_size
                                // train.captions_per_image))
    try:
        torch.manual_seed(check.train_config.seed)
        name, config = check.build()
        model = build_model(name, **config)
        row["params"] = count_parameters(model)
        loader = check.loader(model, sub)
        if check.extra.get("text_features"):
            _text_features([sub, test], device)
        with tempfile.TemporaryDirectory() as tmp, PeakMemory(device) as mem:
            t0 = time.perf_counter()
            result = fit(model, loader, None, check.train_config, Path(tmp) / "run",
                         resume=False, device=device, progress=False, max_steps=steps)
            row["train_s"] = time.perf_counter() - t0
        row["train_steps"] = len(result.history["steps"])
        row["loss"] = result.history["steps"][-1]["loss"]
        row["train_peak_mib"] = mem.mib
        with PeakMemory(device) as mem, torch.no_grad():
            t0 = time.perf_counter()
            evaluate(result.model, test, protocol="1k",
                     batch_size=check.train_config.eval_batch_size, device=device)
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
    chapter_config("02", profile)  # an unknown profile too
    unknown = sorted(set(chapters or ()) - {"01", "07", *CHAPTERS})
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}: expected some of 01-07")
    wanted = [c for c in CHAPTERS if chapters is None or c in chapters]
    root = get_dataset(dataset, data_root=data_root, profile=profile, seed=seed)
    train, test = load_precomp(root, "train"), load_precomp(root, "test")
    log(f"check: {dataset} ({len(train.images)} train / {len(test.images)} test images, "
        f"features {tuple(train.images.shape[1:])}), profile {profile}, device "
        f"{device_name(dev)}")
    rows = []
    for check in chapter_checks(wanted, profile, train, seed):
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
                         f"{r.get('params', 0) / 1e6:.2f} | {r['batch_size']} | | | | | | | "
                         f"FAILED: {r['error'][:200]} |")
            continue
        lines.append(f"| {r['chapter']} | {r['model']} | {r['params'] / 1e6:.2f} | "
                     f"{r['batch_size']} | {r['train_steps']} | {r['train_s']:.2f} | "
                     f"{r['train_peak_mib']:.0f} | {r['eval_images']} | {r['eval_s']:.2f} | "
                     f"{r['eval_peak_mib']:.0f} | ok |")
    return "\n".join(lines)

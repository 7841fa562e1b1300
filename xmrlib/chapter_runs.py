"""The chapters' named training runs: each declared once here, trained or reloaded by name.

A later chapter that needs an earlier chapter's model asks for it by ``(chapter, name)``, e.g.
``chapter_run("03", "VSE++", train, dev, profile, seed=seed)``, and gets exactly the run that
chapter trained (the same run folder of :func:`xmrlib.runs.fit_or_load`), never a copy of its
arguments that may drift and silently train a new run. A :class:`ChapterRun` says which model,
which chapter's profile values (:mod:`xmrlib.config`) set its hyperparameters, which
constructor arguments it fixes, and whether it trains on its chapter's image subsets
(``n_train_images`` / ``n_dev_images``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from xmrlib.config import chapter_config
from xmrlib.models.vsepp import VSE0_FLAGS, VSEPP_FLAGS
from xmrlib.runs import chapter_train_config, fit_or_load, planned_run, run_vocabulary
from xmrlib.train import FitResult, TrainConfig

#: constructor argument -> chapter config key of the dual encoders (VSE, VSE++) and SCAN
DUAL = {"embed_size": "embed_size", "word_dim": "word_dim", "margin": "margin"}
SCAN_T2I = {**DUAL, "warmup": "warmup", "lambda_softmax": "lambda_softmax_t2i",
            "lambda_lse": "lambda_lse_t2i"}
SCAN_I2T = {**DUAL, "warmup": "warmup", "lambda_softmax": "lambda_softmax_i2t",
            "lambda_lse": "lambda_lse_i2t"}
#: chapter parameters that cut a chapter's training and dev splits to their first images
SUBSET_KEYS = ("n_train_images", "n_dev_images")
#: TrainConfig fields a chapter's parameters set
TRAIN_KEYS = ("epochs", "batch_size", "lr", "lr_update")


@dataclass(frozen=True)
class ChapterRun:
    """How one named run of a chapter is built.

    ``model``: an :mod:`xmrlib.models` name. ``hparams``: the chapter whose profile values set
    the training config and the ``from_config`` constructor arguments (argument -> config key).
    ``flags``: constructor arguments the run fixes. ``vocab``: build the vocabulary of the
    training captions (MMCA reads MiniLM's WordPiece tokens instead). ``subset``: train on the
    first ``n_train_images`` / ``n_dev_images`` of the splits (values of the run's own chapter).
    """

    model: str
    hparams: str
    from_config: Mapping[str, str] = field(default_factory=lambda: dict(DUAL))
    flags: Mapping[str, Any] = field(default_factory=dict)
    vocab: bool = True
    subset: bool = False


_MMCA = {"embed_size": "embed_size", "heads": "heads", "alpha": "alpha",
         "max_violation": "max_violation"}

#: every named run of the book: (chapter, name) -> how it is built
RUNS: dict[tuple[str, str], ChapterRun] = {
    ("02", "Kiros VSE"): ChapterRun("vse", "02"),
    ("03", "VSE0"): ChapterRun("vsepp", "03", flags=VSE0_FLAGS),
    ("03", "VSE++"): ChapterRun("vsepp", "03", flags=VSEPP_FLAGS),
    ("03", "VSE++ with warm-up"): ChapterRun("vsepp", "03", {**DUAL, "warmup": "warmup"},
                                          VSEPP_FLAGS),
    **{("04", f"SCAN {a} {g}"): ChapterRun("scan", "04", SCAN_T2I if a == "t2i" else SCAN_I2T,
                                           {"attention": a, "agg": g}, subset=True)
       for a in ("t2i", "i2t") for g in ("LSE", "AVG")},
    **{("04", f"Sum-Max {a}"): ChapterRun("summax", "04", SCAN_T2I if a == "t2i" else SCAN_I2T,
                                          {"attention": a, "agg": "LSE"}, subset=True)
       for a in ("t2i", "i2t")},
    ("04", "SCAN i2t LSE, no warm-up"): ChapterRun(
        "scan", "04", {k: v for k, v in SCAN_I2T.items() if k != "warmup"},
        {"attention": "i2t", "agg": "LSE", "warmup": 0}, subset=True),
    ("05", "MMCA"): ChapterRun("mmca", "05", _MMCA, vocab=False, subset=True),
    ("05", "MMCA cross only"): ChapterRun("mmca", "05", _MMCA, {"terms": "cross"}, vocab=False,
                                          subset=True),
    ("05", "MMCA without region self-attention"): ChapterRun(
        "mmca", "05", _MMCA, {"region_self_attention": False}, vocab=False, subset=True),
    ("05", "VSE++"): ChapterRun("vsepp", "03", flags=VSEPP_FLAGS, subset=True),
    ("05", "SCAN"): ChapterRun("scan", "04", SCAN_T2I, {"attention": "t2i", "agg": "LSE"},
                               subset=True),
}


def chapter_run(chapter: str, name: str, train: Any, dev: Any, profile: str, seed: int = 0,
                device: str | torch.device = "auto", progress: bool = False,
                dataset: str = "shapes", **params: Any) -> FitResult:
    """Train (or reload) the run ``name`` of ``chapter`` (a key of :data:`RUNS`).

    ``train`` / ``dev`` are the data set's whole training and dev splits (a run with ``subset``
    takes its chapter's first images of them). ``params`` are chapter parameters as the
    notebook's ``parameters`` cell has them (``None``: the profile's value): training and
    constructor values of the chapter in ``hparams``, and ``n_train_images`` /
    ``n_dev_images`` of the run's own chapter.
    """
    model, config, cfg, train, dev = _resolve(chapter, name, train, dev, profile, seed, dataset,
                                              params)
    return fit_or_load(model, config, train, dev, cfg, device=device, progress=progress,
                       owner=chapter)


def chapter_run_dir(chapter: str, name: str, train: Any, dev: Any, profile: str, seed: int = 0,
                    dataset: str = "shapes", **params: Any) -> Path:
    """The run folder :func:`chapter_run` trains or reloads, found without training."""
    model, config, cfg, train, dev = _resolve(chapter, name, train, dev, profile, seed, dataset,
                                              params)
    return planned_run(model, config, train, dev, cfg)[1]


def chapter_run_spec(chapter: str, name: str, train: Any, dev: Any, profile: str, seed: int = 0,
                     dataset: str = "shapes", **params: Any
                     ) -> tuple[str, dict[str, Any], TrainConfig]:
    """Model name, constructor arguments and training config of the run :func:`chapter_run`
    trains, without training (the dry run of :mod:`xmrlib.preflight` builds it on a device)."""
    model, config, cfg, _, _ = _resolve(chapter, name, train, dev, profile, seed, dataset,
                                        params)
    return model, config, cfg


def _resolve(chapter: str, name: str, train: Any, dev: Any, profile: str, seed: int,
             dataset: str, params: dict[str, Any]
             ) -> tuple[str, dict[str, Any], TrainConfig, Any, Any]:
    """Model name, constructor arguments, training config and the splits of a named run."""
    from xmrlib.data import first_images
    if (chapter, name) not in RUNS:
        known = ", ".join(f"{c} {n!r}" for c, n in RUNS if c == chapter) or "none"
        raise ValueError(f"no run {name!r} in chapter {chapter!r}: its runs are {known} "
                         "(xmrlib.chapter_runs.RUNS)")
    spec = RUNS[(chapter, name)]
    subset = {k: params.pop(k) for k in SUBSET_KEYS if k in params}
    if subset and not spec.subset:
        raise ValueError(f"run {chapter} {name!r} trains on the whole splits: it takes no "
                         f"{', '.join(subset)}")
    if spec.subset:
        counts = chapter_config(chapter, profile, dataset=dataset, **subset)
        train = first_images(train, counts["n_train_images"])
        dev = first_images(dev, counts["n_dev_images"])
    hp = chapter_config(spec.hparams, profile, dataset=dataset, **params)
    cfg = chapter_train_config(spec.hparams, profile, seed=seed, dataset=dataset,
                               **{k: hp[k] for k in TRAIN_KEYS})
    config = {"img_dim": int(train.images.shape[-1]),
              **{arg: hp[key] for arg, key in spec.from_config.items()}, **spec.flags}
    if spec.vocab:
        config["vocab"] = run_vocabulary(train, profile, dataset).to_dict()
    return spec.model, config, cfg, train, dev

"""Profiles: the one place where every chapter's values live, as one base and a few deltas.

* ``default`` (the base, :data:`BASE`): Shapes at book size, small models and few epochs chosen so
  the whole book builds in under 25 minutes on 2 CPU cores (the published book). These values
  are ours, chosen for the CPU budget.
* ``smoke``: what changes from the base for a run of seconds per chapter (CI, every commit).
* ``full``: what changes from the base for the papers' hyperparameters on real precomp features,
  on a GPU (reproducers). Paper values live here only.

Some values depend on the data set: every profile evaluates MS-COCO on ``testall`` under its own
protocols (:data:`DATASET_DELTAS`), and ``full`` takes each paper's values for that data set
(:data:`PAPER_DATASET_DELTAS`: SCAN's COCO runs differ from its Flickr30K runs). ``full`` on
Shapes takes the Flickr30K values. :func:`chapter_config` resolves one chapter in this order,
later entries winning: base (common, then chapter), profile delta, data-set delta, the paper's
data-set delta (``full`` only), the caller's non-``None`` overrides. This is nanoGPT's pattern:
one flat configuration and a small configurator that overrides it.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

PROFILE_NAMES = ("smoke", "default", "full")
DATASETS = ("shapes", "f30k_precomp", "coco_precomp")

#: The base: the ``default`` profile. ``"common"`` is shared by every chapter (Shapes sizes,
#: evaluation, vocabulary); each chapter's owner edits only its own entry.
#: protocol: the test protocol of the chapter bodies, on ``test_split``; paper_protocols: every
#: protocol that the data set's paper rows use (chapters report each); dev_protocol: the model
#: selection on dev; vocab_min_count: words seen fewer times in the training captions map to
#: <unk> (``full`` uses the official vocabulary file when present, see :mod:`xmrlib.vocab`).
BASE: dict[str, dict[str, Any]] = {
    "common": {"n_train": 5000, "n_dev": 1000, "n_test": 1000, "features": "sim",
               "protocol": "1k", "test_split": "test", "paper_protocols": ["1k"],
               "dev_protocol": "1k", "eval_batch_size": 512, "vocab_min_count": 1},
    # n_test_images (01, 04, 06): the first N images of the test split (None: the protocol's
    # whole split; smoke on real data keeps 100, a check of the code path, not a protocol)
    "01": {"n_simulations": 20, "top_k": 5, "heatmap_images": 12, "n_test_images": None},
    # 02 Kiros VSE. n_seeds: seeds per setting of the image-normalisation exercise.
    "02": {"embed_size": 128, "word_dim": 64, "epochs": 5, "batch_size": 128, "lr": 2e-3,
           "lr_update": 4, "margin": 0.2, "gallery_queries": 3, "n_seeds": 3},
    # 03 VSE++. warmup: fraction of training with the sum loss in the extra "VSE++ with
    # warm-up" run only (VSE-infinity's recipe); the VSE0 / VSE++ runs of Table 2 have none.
    "03": {"embed_size": 128, "word_dim": 64, "epochs": 5, "batch_size": 128, "lr": 2e-3,
           "lr_update": 4, "margin": 0.2, "warmup": 0.2, "n_seeds": 3,
           "sweep_batch_sizes": [32, 128, 512], "sweep_epochs": 2, "tsne_points": 400},
    # 04 SCAN. Lambdas: SCAN Table 1 (softmax 9 t-i / 4 i-t, LSE 6 t-i / 5 i-t on Flickr30K).
    # Ours: a small embedding, two epochs, model selection on a dev subset; warmup = fraction of
    # training with the sum over negatives before the hardest ones (chapter 03's warm-up: with
    # hardest negatives from step 1, i-t LSE and Sum-Max i-t do not learn here); the lr drops
    # x0.1 when the hardest negatives start (lr_update 1 of 2 epochs). n_seeds: seeds of the
    # four SCAN variants and their ensemble, whose ordering the chapter states (the Sum-Max and
    # no-warm-up runs: one seed, no ordering stated). n_train_images: half the training split
    # (book budget: 15 runs of cross attention over B x B pairs per step).
    "04": {"embed_size": 64, "word_dim": 64, "epochs": 2, "warmup": 0.5, "batch_size": 128,
           "lr": 2e-3, "lr_update": 1, "margin": 0.2, "n_train_images": 2500,
           "n_dev_images": 200, "lambda_softmax_t2i": 9.0, "lambda_softmax_i2t": 4.0,
           "lambda_lse_t2i": 6.0, "lambda_lse_i2t": 5.0, "cost_images": 500,
           "cost_captions": 50, "n_test_images": None, "n_seeds": 3},
    # 05 MMCA. Ours: small d, few epochs, a training subset, exact cross-attention evaluation on
    # a test subset, and the sum over all negatives (max_violation False): with hardest
    # negatives from the start and no warm-up, a few hundred steps learn next to nothing.
    # n_seeds: seeds (seed, seed+1, ...) of every run whose ordering the chapter states;
    # size_seeds: of each extra size of the sweep, which states no ordering (book budget).
    # hidden_sizes: one extra size here, twice the chapter's (book budget; 16 dimensions gave
    # 393.7 against 431.6 at 32 in the reference build of 2026-12-03, one seed).
    # eval_every: epochs between dev evaluations, the last always evaluated; 4 = after the last
    # epoch only (book budget: one dev evaluation of the cross term costs about 40 % of an
    # epoch's training, and each of the 17 MMCA runs of the 800-image reference build selected
    # its last epoch).
    "05": {"embed_size": 32, "heads": 4, "alpha": 0.2, "epochs": 4, "eval_every": 4,
           "batch_size": 16, "lr": 2e-3, "lr_update": 3, "max_violation": False,
           "n_train_images": 500, "n_dev_images": 100, "n_eval_images": 200,
           "hidden_sizes": [64], "alphas": [0.0, 0.8], "ablations": True,
           "two_stage_k": [5, 20, 50], "tsne_points": 300, "n_seeds": 3, "size_seeds": 1},
    # 06 A3VSE. Ours: every run trains steps_per_epoch * epochs steps (150: book budget, about
    # 60 runs), and every model (A3VSE and the baselines) sums the hinge over all negatives
    # (max_violation False): with hardest negatives from step 0 and no warm-up, a few hundred
    # steps stay at the collapsed loss (2 x margin) near chance (measured at 250 steps; the
    # chapter measures both at 150). extra_seeds: seeds of the repeated
    # full / "No s" / "without L_adv" runs (training noise of Table 5). n_dev_images: the first
    # dev images that select each run's epoch (None: the whole split; 200 here, where SCAN's dev
    # evaluation on 1000 images took half its training time). degeneration: the curve's
    # annotated shares (book budget: three; 10 % is the ablation setting, trained anyway, so
    # 100 % and 2 % are its only extra runs). degeneration_models: VSE++ only here, SCAN in
    # smoke and full (one SCAN run of this profile took 141 s against 39 s for VSE++ on two busy
    # cores at 250 steps; the curve would need two more SCAN runs).
    "06": {"fractions": [0.5, 0.1], "captions": [1, 2, 5],
           "degeneration": [1.0, 0.1, 0.02], "degeneration_models": ["vsepp"],
           "table2_settings": [[0.1, 5], [0.5, 2]], "ablation_setting": [0.1, 5],
           "baselines": ["vsepp", "scan"], "embed_size": 64, "word_dim": 64, "adv_scale": 1.0,
           "max_violation": False, "disc_hidden": 64, "batch_size": 128, "epochs": 3,
           "steps_per_epoch": 50, "lr": 2e-3, "lr_update": None, "weight_decay": 0.0,
           "tsne_points": 150, "extra_seeds": [1, 2], "n_dev_images": 200,
           "n_test_images": None},
    # 07 side by side: reuses the runs of chapters 02-05 (MMCA with chapter 05's subsets; the
    # table's common test set is chapter 05's n_eval_images); SCAN i-t is a second
    # cross-attention run, trained only in full; two_stage_k = shortlist sizes of the two-stage
    # evaluation.
    "07": {"scan_i2t": False, "two_stage_k": [1, 5, 10, 20, 50]},
}

#: What each profile changes from :data:`BASE` (``default`` changes nothing).
PROFILE_DELTAS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "smoke": {
        "common": {"n_train": 300, "n_dev": 100, "n_test": 100, "eval_batch_size": 256},
        "01": {"n_simulations": 3, "heatmap_images": 8, "n_test_images": 100},
        "02": {"embed_size": 32, "word_dim": 32, "epochs": 2, "batch_size": 64,
               "lr_update": None, "gallery_queries": 2, "n_seeds": 2},
        "03": {"embed_size": 32, "word_dim": 32, "epochs": 2, "batch_size": 64,
               "lr_update": None, "warmup": 0.5, "n_seeds": 1, "sweep_batch_sizes": [32],
               "sweep_epochs": 1, "tsne_points": 60},
        # n_test_images: on real data the first 100 test images (Shapes' smoke test split
        # has 100): cross attention over 1000 x 5000 pairs per model takes too long for CI
        "04": {"embed_size": 16, "word_dim": 16, "batch_size": 64, "n_dev_images": None,
               "cost_images": 100, "cost_captions": 20, "n_test_images": 100, "n_seeds": 1},
        "05": {"embed_size": 16, "epochs": 1, "lr_update": None, "n_train_images": 150,
               "n_dev_images": 40, "n_eval_images": 60, "hidden_sizes": [8], "alphas": [0.0],
               "ablations": False, "two_stage_k": [5], "tsne_points": 60, "n_seeds": 1},
        "06": {"captions": [1, 5], "degeneration": [1.0, 0.1],
               "degeneration_models": ["vsepp", "scan"],
               "table2_settings": [[0.1, 5], [0.5, 1]], "embed_size": 16, "word_dim": 16,
               "disc_hidden": 16, "batch_size": 32, "epochs": 1, "steps_per_epoch": 4,
               "tsne_points": 40, "extra_seeds": [1], "n_dev_images": None,
               "n_test_images": 100},  # as chapter 04's
        "07": {"two_stage_k": [1, 5]},
    },
    # The papers' values. Every departure from a paper is named in a comment here, in the
    # chapter's parameters cell and in the chapter.
    "full": {
        "common": {"n_train": None, "n_dev": None, "n_test": None, "features": "precomp",
                   "eval_batch_size": 128, "vocab_min_count": 4},  # SCAN/vsepp vocab.py: 4
        "01": {},
        # Kiros VSE as in the VSE++ code's VSE0 settings: embedding/LSTM 1024, words 300,
        # margin 0.2, Adam 2e-4, batch 128, 15 epochs, clip 2.
        "02": {"embed_size": 1024, "word_dim": 300, "epochs": 15, "lr": 2e-4,
               "lr_update": None, "n_seeds": 1},  # n_seeds: the exercise's runs, one per setting
        # VSE++ (paper Sec. 4, fartashf/vsepp train.py): embedding 1024, words 300, margin 0.2,
        # Adam 2e-4 for 15 epochs then x0.1, 30 epochs, batch 128, clip 2, no warm-up; the same
        # on both data sets. warmup (0.1) is used only by the extra warm-up run, not by the
        # runs of Table 2.
        "03": {"embed_size": 1024, "word_dim": 300, "epochs": 30, "lr": 2e-4, "lr_update": 15,
               "warmup": 0.1, "n_seeds": 1, "sweep_epochs": 5, "tsne_points": 1000},
        # SCAN (Sec. 4, kuanghuei/SCAN README): embedding 1024, words 300, bi-GRU, margin 0.2,
        # hardest negatives from the start (warmup 0), batch 128, clip 2; Flickr30K: Adam 2e-4,
        # 30 epochs, x0.1 at 15 (COCO in PAPER_DATASET_DELTAS).
        "04": {"embed_size": 1024, "word_dim": 300, "epochs": 30, "warmup": 0.0, "lr": 2e-4,
               "lr_update": 15, "n_train_images": None, "n_dev_images": None, "cost_images": 1000,
               "cost_captions": 200, "n_seeds": 1},
        # MMCA (Sec. 4.2): d = 256, 16 heads, Adam 2e-4 for 10 epochs then x0.1, 20 epochs,
        # batch 64, margin 0.2, hardest negatives, frozen BERT; the same on both data sets.
        "05": {"embed_size": 256, "heads": 16, "epochs": 20, "eval_every": 1, "batch_size": 64,
               "lr": 2e-4, "lr_update": 10, "max_violation": True, "n_train_images": None,
               "n_dev_images": None, "n_eval_images": None, "hidden_sizes": [64, 128, 512],
               "alphas": [0.0, 0.1, 0.4, 0.8], "two_stage_k": [10, 50, 100],
               "tsne_points": 1000, "n_seeds": 1},
        # A3VSE (Sec. 4.1): H 512, K 3, words 300, Adam 5e-4 then x0.1 after epoch 16 of 24,
        # weight decay 1e-6, gradients clipped at 2 (TrainConfig's default), batch 128,
        # hardest negatives, the paper's lambda weights, the Flickr30K grid.
        "06": {"fractions": [0.5, 0.2, 0.1], "degeneration_models": ["vsepp", "scan"],
               "embed_size": 512, "word_dim": 300, "max_violation": True, "disc_hidden": 512,
               "epochs": 24, "steps_per_epoch": None, "lr": 5e-4, "lr_update": 16,
               "weight_decay": 1e-6, "tsne_points": 500, "n_dev_images": None},
        "07": {"scan_i2t": True, "two_stage_k": [1, 5, 10, 20, 50, 100]},
    },
}

#: What each data set changes in every profile: MS-COCO is evaluated on ``testall`` (5000
#: images) with 5-fold 1K in the chapter bodies and both 5-fold 1K and 5K next to the paper
#: rows (Karpathy & Fei-Fei 2015; VSE++; SCAN). Flickr30K: 1K on ``test``, as the base.
DATASET_DELTAS: dict[str, dict[str, dict[str, Any]]] = {
    "shapes": {},
    "f30k_precomp": {},
    "coco_precomp": {"common": {"protocol": "5fold1k", "test_split": "testall",
                                "paper_protocols": ["5fold1k", "5k"]},
                     "06": {"protocol": "5k", "paper_protocols": ["5k"]}},  # A3VSE Tables 3-4
}

#: ``full`` only: paper values that differ between data sets (the other data sets keep the
#: ``full`` delta, which holds the Flickr30K values). SCAN on MS-COCO (kuanghuei/SCAN README):
#: Adam 5e-4, 20 epochs, x0.1 at 10, i-t LSE lambda_2 = 20 (Flickr30K: 2e-4, 30, 15, 5).
#: A3VSE's grids differ (Sec. 4.1, Tables 1-4).
PAPER_DATASET_DELTAS: dict[str, dict[str, dict[str, Any]]] = {
    "coco_precomp": {"04": {"lr": 5e-4, "epochs": 20, "lr_update": 10,
                            "lambda_lse_i2t": 20.0},
                     # A3VSE Table 3 keeps 5 / 10 / 20 % of the COCO images; Table 4 compares
                     # the baselines at 10 % with 1/5 captions and 50 % with 2/5
                     "06": {"fractions": [0.2, 0.1, 0.05], "table2_settings": [[0.1, 1], [0.5, 2]]}},
}

#: Names every chapter's ``parameters`` cell declares besides its own (CONTRIBUTING.md).
BASE_PARAMETERS = ("profile", "dataset", "data_root", "device", "seed")


def _layer(cfg: dict[str, Any], delta: dict[str, dict[str, Any]], chapter: str) -> None:
    """Apply ``delta["common"]`` then ``delta[chapter]`` to ``cfg`` (deep copies)."""
    for part in ("common", chapter):
        cfg.update(deepcopy(delta.get(part, {})))


def profile_values(profile: str, dataset: str = "shapes", chapter: str = "common"
                   ) -> dict[str, Any]:
    """The resolved values of one chapter (``"common"``: the shared ones only), no overrides."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILE_NAMES)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if chapter != "common" and chapter not in BASE:
        raise ValueError(f"unknown chapter {chapter!r}: expected one of "
                         f"{', '.join(c for c in BASE if c != 'common')}")
    cfg: dict[str, Any] = {}
    _layer(cfg, BASE, chapter)
    _layer(cfg, PROFILE_DELTAS[profile], chapter)
    _layer(cfg, DATASET_DELTAS[dataset], chapter)
    if profile == "full":
        _layer(cfg, PAPER_DATASET_DELTAS.get(dataset, {}), chapter)
    return cfg


def chapter_config(chapter: str, profile: str, dataset: str = "shapes", **overrides: Any
                   ) -> dict[str, Any]:
    """The values of ``chapter`` under ``profile`` on ``dataset``, with the non-``None``
    overrides applied (see the module docstring for the order).

    ``dataset`` selects the data set's protocol and, in ``full``, its paper values; it defaults
    to Shapes, so calls written before it existed keep their meaning. The result also holds
    ``chapter``, ``profile`` and ``dataset``. Raises ``ValueError`` naming the unknown chapter,
    profile, data set or parameter.
    """
    cfg = profile_values(profile, dataset or "shapes", chapter)
    known = set(cfg) | set(BASE_PARAMETERS)
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"unknown parameter {name!r} for chapter {chapter} "
                             f"(profile {profile}): known ones are {', '.join(sorted(known))}")
        if value is not None:
            cfg[name] = value
    cfg.update(profile=profile, chapter=chapter, dataset=dataset or "shapes")
    return cfg


#: The shared values of each profile, resolved (Shapes; read by the data generator and the report).
COMMON: dict[str, dict[str, Any]] = {p: profile_values(p) for p in PROFILE_NAMES}


def _values(chapter: str, name: str) -> list[Any]:
    """Every value ``name`` takes for ``chapter`` in any profile and data set (None left out)."""
    out = []
    for profile in PROFILE_NAMES:
        for dataset in DATASETS:
            value = profile_values(profile, dataset, chapter).get(name)
            if value is not None and value not in out:
                out.append(value)
    return out


def _same_kind(value: Any, example: Any) -> bool:
    """``value`` has the type of ``example``: a bool for a bool, an integer (not a bool) for an
    integer, a number for a float, a list whose items match some item of the example list."""
    if isinstance(example, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(example, bool)
    if isinstance(example, int):
        return isinstance(value, int)
    if isinstance(example, float):
        return isinstance(value, (int, float))
    if isinstance(example, list):
        return isinstance(value, list) and (not example or all(
            any(_same_kind(v, e) for e in example) for v in value))
    return isinstance(value, type(example))


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list"}


def check_override(chapter: str, name: str, value: Any) -> None:
    """A chapter parameter set from outside (``-p NAME VALUE``) must have the type of the values
    its profiles use; ``None`` always means "the profile's value". Raises ``ValueError``."""
    examples = _values(chapter, name)
    if value is None or not examples or any(_same_kind(value, e) for e in examples):
        return
    kind = _KIND_NAMES.get(type(examples[0]), type(examples[0]).__name__)
    shown = ", ".join(repr(e) for e in examples[:3]).replace("'", '"')
    raise ValueError(f"-p {name} {value!r}: expected {kind} as chapter {chapter}'s profiles use "
                     f"({shown}), or None for the profile's value")

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
    "01": {"smoke": {"n_simulations": 3, "top_k": 5, "heatmap_images": 8},
           "default": {"n_simulations": 20, "top_k": 5, "heatmap_images": 12},
           "full": {"n_simulations": 20, "top_k": 5, "heatmap_images": 12}},
    # 02 Kiros VSE. full: the authors' settings (embedding/LSTM 1024, words 300, margin 0.2,
    # Adam 2e-4, batch 128, 15 epochs, clip 2). smoke/default: ours, sized for 2 CPU cores.
    "02": {"smoke": {"embed_size": 32, "word_dim": 32, "epochs": 2, "batch_size": 64,
                     "lr": 2e-3, "lr_update": None, "margin": 0.2, "gallery_queries": 2},
           "default": {"embed_size": 128, "word_dim": 64, "epochs": 5, "batch_size": 128,
                       "lr": 2e-3, "lr_update": 4, "margin": 0.2, "gallery_queries": 3},
           "full": {"embed_size": 1024, "word_dim": 300, "epochs": 15, "batch_size": 128,
                    "lr": 2e-4, "lr_update": None, "margin": 0.2, "gallery_queries": 3}},
    # 03 VSE++. full: the paper (embedding 1024, words 300, margin 0.2, Adam 2e-4 for 15 epochs
    # then x0.1, 30 epochs, batch 128, clip 2). smoke/default: ours, sized for 2 CPU cores;
    # warmup = fraction of training with the sum loss before max violation.
    "03": {"smoke": {"embed_size": 32, "word_dim": 32, "epochs": 2, "batch_size": 64,
                     "lr": 2e-3, "lr_update": None, "margin": 0.2, "warmup": 0.5, "n_seeds": 1,
                     "sweep_batch_sizes": [32], "sweep_epochs": 1, "tsne_points": 60},
           "default": {"embed_size": 128, "word_dim": 64, "epochs": 5, "batch_size": 128,
                       "lr": 2e-3, "lr_update": 4, "margin": 0.2, "warmup": 0.2, "n_seeds": 3,
                       "sweep_batch_sizes": [32, 128, 512], "sweep_epochs": 2,
                       "tsne_points": 400},
           "full": {"embed_size": 1024, "word_dim": 300, "epochs": 30, "batch_size": 128,
                    "lr": 2e-4, "lr_update": 15, "margin": 0.2, "warmup": 0.1, "n_seeds": 1,
                    "sweep_batch_sizes": [32, 128, 512], "sweep_epochs": 5,
                    "tsne_points": 1000}},
    # 04 SCAN. full: the paper (Sec. 4: embedding 1024, words 300, bi-GRU, margin 0.2, max
    # violation from the start, batch 128, clip 2, lambda_softmax 9 t-i / 4 i-t, lambda_lse 6 t-i /
    # 5 i-t (Table 1); F30K Adam 2e-4, 30 epochs, x0.1 at 15; COCO 5e-4, 20 epochs, x0.1 at 10 -
    # the lr/epochs below are F30K's). smoke/default: ours, sized for 2 CPU cores (small
    # embedding, two epochs, model selection on a dev subset, 1K protocol);
    # warmup = fraction of training with the sum over negatives before the hardest negatives
    # (chapter 03's warm-up: with hardest negatives from step 1, i-t LSE and Sum-Max i-t do not
    # learn here); the lr drops x0.1 when the hardest negatives start (lr_update 1 of 2 epochs).
    "04": {"smoke": {"embed_size": 16, "word_dim": 16, "epochs": 2, "warmup": 0.5,
                     "batch_size": 64, "lr": 2e-3, "lr_update": 1, "margin": 0.2,
                     "n_train_images": None, "n_dev_images": None, "lambda_softmax_t2i": 9.0,
                     "lambda_softmax_i2t": 4.0, "lambda_lse_t2i": 6.0, "lambda_lse_i2t": 5.0,
                     "cost_images": 100, "cost_captions": 20},
           "default": {"embed_size": 64, "word_dim": 64, "epochs": 2, "warmup": 0.5,
                       "batch_size": 128, "lr": 2e-3, "lr_update": 1, "margin": 0.2,
                       "n_train_images": None, "n_dev_images": 200, "lambda_softmax_t2i": 9.0,
                       "lambda_softmax_i2t": 4.0, "lambda_lse_t2i": 6.0, "lambda_lse_i2t": 5.0,
                       "cost_images": 500, "cost_captions": 50},
           "full": {"embed_size": 1024, "word_dim": 300, "epochs": 30, "warmup": 0.0,
                    "batch_size": 128, "lr": 2e-4, "lr_update": 15, "margin": 0.2,
                    "n_train_images": None, "n_dev_images": None, "lambda_softmax_t2i": 9.0,
                    "lambda_softmax_i2t": 4.0, "lambda_lse_t2i": 6.0, "lambda_lse_i2t": 5.0,
                    "cost_images": 1000, "cost_captions": 200}},
    # 05 MMCA. full: the paper (Sec. 4.2: d = 256, 16 heads, Adam 2e-4 for 10 epochs then x0.1,
    # 20 epochs, batch 64, margin 0.2, hardest negatives, frozen BERT). smoke/default: ours, for
    # 2 CPU cores: small d, few epochs, a training subset, exact cross-attention evaluation on a
    # test subset, and the sum over all negatives (max_violation False): with hardest negatives
    # from the start and no warm-up, a few hundred steps learn next to nothing.
    "05": {"smoke": {"embed_size": 16, "heads": 4, "alpha": 0.2, "epochs": 1, "batch_size": 16,
                     "lr": 2e-3, "lr_update": None, "max_violation": False,
                     "n_train_images": 150, "n_dev_images": 40,
                     "n_eval_images": 60, "hidden_sizes": [8], "alphas": [0.0],
                     "ablations": False, "two_stage_k": [5], "tsne_points": 60},
           "default": {"embed_size": 32, "heads": 4, "alpha": 0.2, "epochs": 4, "batch_size": 16,
                       "lr": 2e-3, "lr_update": 3, "max_violation": False,
                       "n_train_images": 800, "n_dev_images": 100,
                       "n_eval_images": 200, "hidden_sizes": [16, 64], "alphas": [0.0, 0.8],
                       "ablations": True, "two_stage_k": [5, 20, 50], "tsne_points": 300},
           "full": {"embed_size": 256, "heads": 16, "alpha": 0.2, "epochs": 20, "batch_size": 64,
                    "lr": 2e-4, "lr_update": 10, "max_violation": True,
                    "n_train_images": None, "n_dev_images": None,
                    "n_eval_images": None, "hidden_sizes": [64, 128, 512],
                    "alphas": [0.0, 0.1, 0.4, 0.8], "ablations": True,
                    "two_stage_k": [10, 50, 100], "tsne_points": 1000}},
    # 06 A3VSE. full: the paper (H 512, K 3, words 300, Adam 5e-4 then x0.1 after epoch 16 of
    # 24, batch 128, hardest negatives, the paper's lambda weights, Flickr30K grid).
    # smoke/default: ours, for 2 CPU cores: every run trains steps_per_epoch * epochs steps, and
    # every model (A3VSE and the baselines) sums the hinge over all negatives (max_violation
    # False): with hardest negatives from step 0 and no warm-up, a few hundred steps stay at the
    # collapsed loss (2 x margin) near chance; the chapter measures both. extra_seeds: seeds
    # of the repeated full / "No s" / "without L_adv" runs (training noise of Table 5).
    # n_dev_images: the first dev images that select each run's epoch (None: the whole split;
    # 200 in default, where SCAN's dev evaluation on 1000 images took half its training time).
    "06": {"smoke": {"fractions": [0.5, 0.1], "captions": [1, 5], "degeneration": [1.0, 0.1],
                     "degeneration_models": ["vsepp", "scan"],
                     "table2_settings": [[0.1, 5], [0.5, 1]], "ablation_setting": [0.1, 5],
                     "baselines": ["vsepp", "scan"], "embed_size": 16, "word_dim": 16,
                     "adv_scale": 1.0, "max_violation": False, "disc_hidden": 16,
                     "batch_size": 32, "epochs": 1, "steps_per_epoch": 4, "lr": 2e-3,
                     "lr_update": None, "tsne_points": 40, "extra_seeds": [1],
                     "n_dev_images": None},
           "default": {"fractions": [0.5, 0.1], "captions": [1, 2, 5],
                       "degeneration": [1.0, 0.5, 0.2, 0.1, 0.02],
                       "degeneration_models": ["vsepp"],
                       "table2_settings": [[0.1, 5], [0.5, 2]], "ablation_setting": [0.1, 5],
                       "baselines": ["vsepp", "scan"], "embed_size": 64, "word_dim": 64,
                       "adv_scale": 1.0, "max_violation": False, "disc_hidden": 64,
                       "batch_size": 128, "epochs": 5,
                       "steps_per_epoch": 50, "lr": 2e-3, "lr_update": None,
                       "tsne_points": 150, "extra_seeds": [1, 2], "n_dev_images": 200},
           "full": {"fractions": [0.5, 0.2, 0.1], "captions": [1, 2, 5],
                    "degeneration": [1.0, 0.5, 0.2, 0.1, 0.02],
                    "degeneration_models": ["vsepp", "scan"],
                    "table2_settings": [[0.1, 5], [0.5, 2]], "ablation_setting": [0.1, 5],
                    "baselines": ["vsepp", "scan"], "embed_size": 512, "word_dim": 300,
                    "adv_scale": 1.0, "max_violation": True, "disc_hidden": 512,
                    "batch_size": 128, "epochs": 24,
                    "steps_per_epoch": None, "lr": 5e-4, "lr_update": 16, "tsne_points": 500,
                    "extra_seeds": [1, 2], "n_dev_images": None}},
    # 07 side by side: reuses the runs of chapters 02-05 (MMCA with chapter 05's subsets; the
    # table's common test set is chapter 05's n_eval_images); SCAN i-t is a second
    # cross-attention run, trained only in full; two_stage_k = shortlist sizes of the two-stage
    # evaluation.
    "07": {"smoke": {"scan_i2t": False, "two_stage_k": [1, 5]},
           "default": {"scan_i2t": False, "two_stage_k": [1, 5, 10, 20, 50]},
           "full": {"scan_i2t": True, "two_stage_k": [1, 5, 10, 20, 50, 100]}},
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

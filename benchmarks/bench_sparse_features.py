"""Training on non-negative sparse region features (issue 15, item 8): what the data does.

Shapes with ``features="cnn"`` (EfficientNet-lite0 pooled head outputs on the crops: ReLU-like,
about 72 % exact zeros) trains VSE++ and SCAN to collapse, and ``tests/test_fidelity.py`` shows
that the official code's steps are ours to rounding, so the cause is in the data. This script
measures it, on a Shapes folder written by ``make_shapes`` (``--root``; the training split's
statistics centre every split):

* **feature statistics**: exact zeros, mean pairwise cosine of region features and of the
  mean-pooled image features;
* **common mode**: over the first 10 steps of VSE++ (the ``full`` recipe), the share of each
  step's change of the image embeddings that is the same vector for every image of the batch,
  ``|mean_i de_i|^2 / mean_i |de_i|^2`` (before l2 normalisation);
* **training**: one run per (model, recipe, feature transform): mean loss per epoch against the
  collapse value 2 B margin, dev rsum per epoch against chance, and the mean pairwise cosine of
  the dev image embeddings (first region for SCAN) of the selected model.

Transforms (statistics of the training split, valid regions only): ``raw``; ``center`` (minus
the mean region feature); ``l2`` (each region scaled to unit norm, what vsepp's
``EncoderImagePrecomp`` comment assumes); ``center_l2``; ``std`` (z-score per dimension);
``nobg`` (the whole-image background regions dropped).

    python -c "from xmrlib.data import make_shapes; make_shapes('build/cnn2000', 2000, 200, 200, features='cnn')"
    OMP_NUM_THREADS=1 python benchmarks/bench_sparse_features.py --root build/cnn2000 --out cnn.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmrlib.data import PrecompData, load_precomp, make_loader
from xmrlib.evaluation import encode_dataset, random_ranking_expectation
from xmrlib.models import build_model
from xmrlib.models.common import masked_mean
from xmrlib.train import TrainConfig, fit
from xmrlib.vocab import Vocabulary

TRANSFORMS = ("raw", "center", "l2", "center_l2", "std", "nobg")
#: recipe name -> (model, epochs, lr, embed, word_dim, warmup, lr_update)
RECIPES = {
    "vsepp-full": ("vsepp", 5, 2e-4, 1024, 300, 0.0, None),   # VSE++ paper: no warm-up
    "vsepp-full-warm": ("vsepp", 5, 2e-4, 1024, 300, 0.1, None),  # chapter 03 full: warm-up
    "vsepp-default": ("vsepp", 5, 2e-3, 128, 64, 0.2, 4),     # chapter 03 default
    "scan-default": ("scan", 2, 2e-3, 64, 64, 0.5, 1),        # chapter 04 default
    "scan-default-nowarm": ("scan", 2, 2e-3, 64, 64, 0.0, 1),
    "scan-full256": ("scan", 3, 2e-4, 256, 300, 0.0, None),   # SCAN paper, embedding 256
}


def _valid(images: np.ndarray, n_regions: np.ndarray) -> np.ndarray:
    return np.arange(images.shape[1])[None, :] < np.asarray(n_regions)[:, None]  # (N, R)


def _mean_cos(x: torch.Tensor) -> float:
    """Mean cosine over distinct pairs of rows of x (n, d)."""
    x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    n = len(x)
    return float(((x.sum(0).square().sum()) - n) / (n * n - n))


def load(root: Path, split: str, transform: str, stats: dict[str, np.ndarray] | None
         ) -> PrecompData:
    """A split in RAM with ``transform`` applied (``stats``: the training split's mean/std)."""
    data = load_precomp(root, split)
    if transform == "nobg":  # objects come first; background regions after them
        scenes = json.loads((root / f"{split}_scenes.json").read_text(encoding="utf-8"))
        data.n_regions = np.array([len(s["objects"]) for s in scenes], dtype=np.int64)
    x = np.array(data.images, dtype=np.float32)
    m = _valid(x, data.n_regions)
    if transform in ("center", "center_l2"):
        x[m] -= stats["mean"]
    if transform == "std":
        x[m] = (x[m] - stats["mean"]) / stats["std"]
    if transform in ("l2", "center_l2"):
        x[m] /= np.linalg.norm(x[m], axis=1, keepdims=True) + 1e-12
    x[~m] = 0.0
    data.images = x
    return data


def feature_statistics(data: PrecompData) -> dict[str, float]:
    x = torch.from_numpy(np.asarray(data.images))
    nr = torch.as_tensor(data.n_regions)
    regions = x[torch.from_numpy(_valid(x.numpy(), nr.numpy()))]
    sample = regions[torch.randperm(len(regions), generator=torch.Generator().manual_seed(0))[:3000]]
    return {"zeros": float((regions == 0).float().mean()), "region_cos": _mean_cos(sample),
            "pooled_cos": _mean_cos(masked_mean(x, nr)[:3000]),
            "region_norm": float(regions.norm(dim=1).mean())}


def common_mode(train: PrecompData, steps: int = 10) -> float:
    """Mean over the first ``steps`` VSE++ (full recipe) steps of the common share of the
    change of the batch's image embeddings."""
    torch.manual_seed(0)
    model = build_model("vsepp", vocab=Vocabulary.build(train.captions).to_dict(),
                        img_dim=train.images.shape[-1], embed_size=1024, word_dim=300)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    fc, shares = model.img_enc.fc, []
    for k, batch in enumerate(make_loader(train, model.tokenize, 128, seed=0)):
        if k >= steps:
            break
        pooled = masked_mean(batch["images"], batch["n_regions"])  # (B, D)
        w0, b0 = fc.weight.detach().clone(), fc.bias.detach().clone()
        loss, _ = model.loss(batch, 0.0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        with torch.no_grad():
            de = pooled @ (fc.weight - w0).T + (fc.bias - b0)  # (B, e)
            shares.append(float(de.mean(0).square().sum() / de.square().sum(1).mean()))
    return float(np.mean(shares))


def train_run(train: PrecompData, dev: PrecompData, recipe: str, seed: int = 0
              ) -> dict[str, Any]:
    name, epochs, lr, embed, word, warmup, lr_update = RECIPES[recipe]
    torch.manual_seed(seed)
    model = build_model(name, vocab=Vocabulary.build(train.captions).to_dict(),
                        img_dim=train.images.shape[-1], embed_size=embed, word_dim=word,
                        warmup=warmup, max_violation=True)
    cfg = TrainConfig(epochs=epochs, lr=lr, lr_update=lr_update, batch_size=128, seed=seed,
                      eval_batch_size=512)
    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        res = fit(model, make_loader(train, model.tokenize, 128, seed=seed), dev, cfg, folder,
                  resume=False, device="cpu", progress=False)
    steps = res.history["steps"]
    per_epoch = len(steps) // epochs
    img, _, _ = encode_dataset(res.model, dev, 256, "cpu", progress=False)
    return {"loss": [round(float(np.mean([s["loss"] for s in
                                          steps[e * per_epoch:(e + 1) * per_epoch]])), 1)
                     for e in range(epochs)],
            "collapse_loss": 2 * 128 * 0.2,
            "rsum": [round(e["rsum"], 1) for e in res.history["epochs"]],
            "chance_rsum": round(random_ranking_expectation(len(dev.images))["rsum"], 1),
            "img_cos": round(_mean_cos(img if img.dim() == 2 else img[:, 0]), 3),
            "cpu_s": round(time.process_time() - t0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="a Shapes folder (make_shapes)")
    p.add_argument("--transforms", default="raw,center", help=f"some of {TRANSFORMS}")
    p.add_argument("--recipes", default="vsepp-full", help=f"some of {tuple(RECIPES)}")
    p.add_argument("--out", type=Path, help="also append JSON lines here")
    a = p.parse_args()
    raw = load(a.root, "train", "raw", None)
    valid = np.asarray(raw.images)[_valid(np.asarray(raw.images), raw.n_regions)]
    stats = {"mean": valid.mean(0), "std": valid.std(0) + 1e-6}
    for transform in a.transforms.split(","):
        train = load(a.root, "train", transform, stats)
        dev = load(a.root, "dev", transform, stats)
        rows = [{"transform": transform, **{k: round(v, 3) for k, v in
                                             feature_statistics(train).items()},
                 "common_mode": round(common_mode(train), 3)}]
        rows += [{"transform": transform, "recipe": r, **train_run(train, dev, r)}
                 for r in a.recipes.split(",")]
        for row in rows:
            print(json.dumps(row), flush=True)
            if a.out:
                with a.out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

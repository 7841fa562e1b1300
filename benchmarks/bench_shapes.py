"""Time the Shapes generator, measure its captions and linear-probe its region features (sim vs
cnn); prints a report.

* generation time of ``features="sim"`` at ``--n-train/--n-dev/--n-test`` (default size);
* the caption statistics of that data (:func:`xmrlib.data.shapes.folder_statistics`: images per
  caption and recalls of the truth oracle, binding ceiling, length, vocabulary);
* generation time of ``features="cnn"`` (EfficientNet-lite0) at the smaller ``--cnn-*`` size,
  extrapolated linearly in the number of images to the default size;
* linear probes (scikit-learn ``LogisticRegression`` on standardised features, trained on the
  train split, scored on the test split) for every fact type a caption can state
  (:data:`xmrlib.data.shapes.FACT_TYPES`: colour, shape, size, position from object regions;
  relation from pairs of object regions; count, background from the summed regions of an
  image; :func:`xmrlib.data.shapes.probe_data`), from sim and from cnn features of the *same*
  scenes (the small size, same seed), next to the majority-class rate;
* with ``--models``: VSE++ (chapter 03) and SCAN (chapter 04), default-profile configs with
  ``--epochs`` epochs, trained on each small set and scored on its test split (1K protocol), to
  see which features separate the two models more.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_shapes.py [--models]``
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from xmrlib.data import make_shapes
from xmrlib.data.shapes import FACT_TYPES, folder_statistics, probe_data


def fact_examples(root: Path, split: str, fact: str) -> tuple[np.ndarray, np.ndarray]:
    """Probe inputs and labels of one fact type for a split of the Shapes folder ``root``."""
    ims = np.load(root / f"{split}_ims.npy")
    nreg = np.load(root / f"{split}_nregions.npy")
    scenes = json.loads((root / f"{split}_scenes.json").read_text(encoding="utf-8"))
    return probe_data(ims, nreg, scenes, fact)


def probe(root: Path, fact: str) -> tuple[float, float]:
    """Test accuracy of a linear probe for ``fact`` trained on the train split, and the
    test accuracy of always answering the majority class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr, y_tr = fact_examples(root, "train", fact)
    x_te, y_te = fact_examples(root, "test", fact)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(x_tr, y_tr)
    majority = max(float(np.mean(y_te == v)) for v in set(y_te.tolist()))
    return float((clf.predict(x_te) == y_te).mean()), majority


def compare_models(root: Path, epochs: int, runs: Path) -> dict[str, dict[str, float]]:
    """Test rsum and binding accuracy of VSE++ and SCAN trained on the Shapes folder ``root``."""
    from xmrlib.data import load_precomp
    from xmrlib.evaluation import evaluate
    from xmrlib.runs import chapter_model_config, chapter_train_config, fit_or_load

    train, dev, test = (load_precomp(root, s) for s in ("train", "dev", "test"))
    out = {}
    for chapter, name in (("03", "vsepp"), ("04", "scan")):
        cfg = chapter_train_config(chapter, "default", epochs=epochs, lr_update=None)
        config = chapter_model_config(chapter, "default", train)
        result = fit_or_load(name, config, train, dev, cfg, device="cpu", progress=False,
                             root=runs)
        metrics = evaluate(result.model, test, protocol="1k", device="cpu")
        out[name] = {k: metrics[k] for k in ("rsum", "binding_acc")}
    return out


def timed(root: Path, sizes: tuple[int, int, int], features: str, seed: int) -> float:
    t = time.perf_counter()
    make_shapes(root, *sizes, seed=seed, features=features, device="cpu")
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-dev", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--cnn-n-train", type=int, default=500)
    p.add_argument("--cnn-n-dev", type=int, default=100)
    p.add_argument("--cnn-n-test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", action="store_true", help="also train VSE++ and SCAN on both")
    p.add_argument("--epochs", type=int, default=15)
    a = p.parse_args()
    big = (a.n_train, a.n_dev, a.n_test)
    small = (a.cnn_n_train, a.cnn_n_dev, a.cnn_n_test)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_sim = timed(tmp / "sim_big", big, "sim", a.seed)
        print(f"shapes sim {'/'.join(map(str, big))}: {t_sim:.1f} s")
        stats = folder_statistics(tmp / "sim_big")
        print("captions (test split; language on train): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()))
        t_sim_small = timed(tmp / "sim", small, "sim", a.seed)
        t_cnn = timed(tmp / "cnn", small, "cnn", a.seed)
        scale = sum(big) / sum(small)
        print(f"shapes sim {'/'.join(map(str, small))}: {t_sim_small:.1f} s")
        print(f"shapes cnn {'/'.join(map(str, small))}: {t_cnn:.1f} s "
              f"(extrapolated to {'/'.join(map(str, big))}: {t_cnn * scale:.0f} s)")
        for features in ("sim", "cnn"):
            size_mb = (tmp / features / "train_ims.npy").stat().st_size / 2**20
            scores = {fact: probe(tmp / features, fact) for fact in FACT_TYPES}
            print(f"probe {features}: " + ", ".join(f"{k} {acc:.3f} (majority {maj:.3f})"
                                                     for k, (acc, maj) in scores.items())
                  + f"; train_ims.npy {size_mb:.1f} MiB at the small size")
            if a.models:
                for name, m in compare_models(tmp / features, a.epochs, tmp / "runs").items():
                    print(f"  {features} {name}: test rsum {m['rsum']:.1f}, "
                          f"binding_acc {m['binding_acc']:.3f}")


if __name__ == "__main__":
    main()

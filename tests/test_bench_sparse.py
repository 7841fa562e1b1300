"""benchmarks/bench_sparse_features.py on the tiny Shapes set: transforms and the common mode."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sparse_features.py"
    spec = importlib.util.spec_from_file_location("bench_sparse_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stats(bench, root):
    raw = bench.load(root, "train", "raw", None)
    x = np.asarray(raw.images)
    v = x[bench._valid(x, raw.n_regions)]
    return raw, {"mean": v.mean(0), "std": v.std(0) + 1e-6}


def test_transforms(bench, shapes_root):
    raw, stats = _stats(bench, shapes_root)
    centred = bench.load(shapes_root, "train", "center", stats)
    m = bench._valid(centred.images, centred.n_regions)
    assert np.allclose(centred.images[m].mean(0), 0, atol=1e-4)
    assert (centred.images[~m] == 0).all()  # padding stays zero
    unit = bench.load(shapes_root, "train", "l2", stats)
    assert np.allclose(np.linalg.norm(unit.images[m], axis=1), 1, atol=1e-5)
    nobg = bench.load(shapes_root, "train", "nobg", stats)
    assert (nobg.n_regions < raw.n_regions).all()  # every scene has a background region


def test_common_mode_is_large_for_features_with_a_shared_mean(bench, shapes_root):
    raw, stats = _stats(bench, shapes_root)
    shifted = bench.load(shapes_root, "train", "raw", stats)
    m = bench._valid(shifted.images, shifted.n_regions)
    shifted.images[m] += 20.0  # every region gets the same large offset
    centred = bench.load(shapes_root, "train", "center", stats)
    big, small = bench.common_mode(shifted, steps=2), bench.common_mode(centred, steps=2)
    assert big > 0.9 and small < 0.2
    assert bench.feature_statistics(shifted)["pooled_cos"] > 0.9
    assert abs(bench.feature_statistics(centred)["pooled_cos"]) < 0.1

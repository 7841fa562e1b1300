"""Every fact type a Shapes caption can state is carried by the simulated region features: a
linear probe per fact type (trained on train regions, scored on test regions) recovers it,
and the same probe on shuffled labels does not (so the test can fail)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xmrlib.data import load_precomp, make_shapes
from xmrlib.data.shapes import FACT_TYPES, probe_data


@pytest.fixture(scope="module")
def probe_splits(tmp_path_factory):
    root = make_shapes(tmp_path_factory.mktemp("probe"), 400, 10, 150, seed=3)
    return load_precomp(root, "train"), load_precomp(root, "test")


def _accuracy(train, test, fact, shuffle=False):
    x_tr, y_tr = probe_data(train.images, train.n_regions, train.scenes, fact)
    x_te, y_te = probe_data(test.images, test.n_regions, test.scenes, fact)
    if shuffle:
        y_tr = np.random.default_rng(0).permutation(y_tr)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x_tr, y_tr)
    majority = max(np.mean(y_te == v) for v in set(y_te.tolist()))
    return float((clf.predict(x_te) == y_te).mean()), float(majority)


@pytest.mark.parametrize("fact", FACT_TYPES)
def test_linear_probe_recovers_each_fact_type(probe_splits, fact):
    acc, majority = _accuracy(*probe_splits, fact)
    assert acc >= 0.9 and acc > majority + 0.3, (fact, acc, majority)


@pytest.mark.parametrize("fact", ["shape", "relation"])
def test_probe_on_shuffled_labels_is_near_chance(probe_splits, fact):
    acc, majority = _accuracy(*probe_splits, fact, shuffle=True)
    assert acc < majority + 0.15, (fact, acc, majority)

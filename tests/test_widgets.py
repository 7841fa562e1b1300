"""Tests of xmrlib.widgets: the displayed results equal a naive top-k, and follow the controls."""

import ipywidgets as w
import numpy as np
import pytest
from PIL import Image

from xmrlib import widgets


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    n_img = 4
    sims = rng.normal(size=(n_img, 5 * n_img))
    paths = []
    for i in range(n_img):
        p = tmp_path / f"{i:05d}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(p)
        paths.append(p)
    captions = [f"caption number {j}" for j in range(5 * n_img)]
    return sims, captions, paths


def _naive_top(scores, k):
    idx = list(range(len(scores)))
    idx.sort(key=lambda i: -scores[i])
    return idx[:k]


def _shown_images(ex):
    return [child.children[0].value for child in ex.results.children]


def test_initial_state_static_and_naive_topk(data):
    sims, captions, paths = data
    ex = widgets.retrieval_explorer(sims, captions, paths, k=3)
    assert "static snapshot" in ex.children[0].value
    assert not any(isinstance(c, w.Output) for c in ex.children)
    want = _naive_top(sims[:, 0], 3)
    assert _shown_images(ex) == [paths[i].read_bytes() for i in want]
    labels = [child.children[1].value for child in ex.results.children]
    assert ["✓" in lab for lab in labels] == [i == 0 for i in want]
    from ipywidgets.embed import embed_data

    state = embed_data(views=[ex])["manager_state"]["state"]
    assert sum(m["model_name"] == "ImageModel" for m in state.values()) >= 3


def test_changing_query_k_and_mode_updates(data):
    sims, captions, paths = data
    ex = widgets.retrieval_explorer(sims, captions, paths, k=3)
    ex.query.value = 13
    want = _naive_top(sims[:, 13], 3)
    assert _shown_images(ex) == [paths[i].read_bytes() for i in want]
    ex.k.value = 2
    assert len(ex.results.children) == 2
    ex.mode.value = widgets.IMAGE_QUERY          # 13 > 3 images: the index is clamped to 3
    assert ex.query.value == 3
    want = _naive_top(sims[3], 2)
    lines = [h.value for h in ex.results.children]
    assert [f"caption number {j}" in line for j, line in zip(want, lines)] == [True, True]
    assert ["✓" in line for line in lines] == [j // 5 == 3 for j in want]
    ex._update({"owner": ex.query, "new": 1})     # the observer called directly
    ex.query.value = 1
    assert ex.query_view.children[1].value == paths[1].read_bytes()


def test_explorer_rejects_mismatched_inputs(data):
    sims, captions, paths = data
    with pytest.raises(ValueError, match="captions"):
        widgets.retrieval_explorer(sims, captions[:-1], paths)
    with pytest.raises(ValueError, match="expected"):
        widgets.retrieval_explorer(sims[:, :-1], captions[:-1], paths)


def test_metric_explorer_rank_and_hit():
    sims = np.zeros((3, 15))
    sims[0, 4] = 1.0         # caption 4 (of image 0) scores image 0 highest -> rank 1
    sims[2, 5] = 2.0         # caption 5 (of image 1) ranks image 2 first; ties put image 1 last
    ex = widgets.metric_explorer(sims, 5, k=1)
    assert "static snapshot" in ex.children[0].value
    ex.query.value = 4
    assert "ranked <b>1</b>" in ex.verdict.value and "hit" in ex.verdict.value
    ex.query.value = 5
    # image 1's column 5 has scores (0, 0, 2): images scoring >= 0 are all three -> rank 3
    assert "ranked <b>3</b>" in ex.verdict.value and "miss" in ex.verdict.value
    ex.k.value = 3
    assert "hit" in ex.verdict.value

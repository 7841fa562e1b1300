"""Tests of xmrlib.widgets: the displayed results equal a naive top-k, and follow the controls."""

import base64
import io
import re

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


def _tree(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _tree(child)


def _naive_t2i_rank(sims, j):
    return 1 + sum(sims[i, j] >= sims[j // 5, j] for i in range(sims.shape[0]) if i != j // 5)


def _naive_i2t_rank(sims, i):
    true = range(5 * i, 5 * i + 5)
    return min(1 + sum(sims[i, c] >= sims[i, t] for c in range(sims.shape[1]) if c not in true)
               for t in true)


def _naive_top(scores, k):
    idx = list(range(len(scores)))
    idx.sort(key=lambda i: -scores[i])
    return idx[:k]


def _shown_images(view_html):
    """The PNG bytes of the images a view shows, in order."""
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([^']+)", view_html)]


def _lines(view_html):
    return re.findall(r"<li>(.*?)</li>", view_html)


def _figures(view_html):
    return re.findall(r"<figcaption>(.*?)</figcaption>", view_html)


def _thumbs(paths, idx):
    return [widgets.thumbnail_png(paths[i], 96) for i in idx]


def test_initial_state_live_and_naive_topk(data):
    sims, captions, paths = data
    ex = widgets.retrieval_explorer(sims, captions, paths, k=3)
    assert ex.tabs.titles[1] == widgets.LIVE_TITLE and "static snapshot" in widgets.LIVE_NOTE
    assert not any(isinstance(c, w.Output) for c in _tree(ex))
    want = _naive_top(sims[:, 0], 3)
    assert _shown_images(ex.view.value) == _thumbs(paths, want)
    assert ["✓" in f for f in _figures(ex.view.value)] == [i == 0 for i in want]
    assert captions[0] in ex.view.value


def test_changing_query_k_and_mode_updates(data):
    sims, captions, paths = data
    ex = widgets.retrieval_explorer(sims, captions, paths, k=3)
    ex.query.value = 13
    want = _naive_top(sims[:, 13], 3)
    assert _shown_images(ex.view.value) == _thumbs(paths, want)
    ex.k.value = 2
    assert len(_figures(ex.view.value)) == 2
    ex.mode.value = widgets.IMAGE_QUERY          # 13 > 3 images: the index is clamped to 3
    assert ex.query.value == 3
    want = _naive_top(sims[3], 2)
    lines = _lines(ex.view.value)
    assert [f"caption number {j}" in line for j, line in zip(want, lines)] == [True, True]
    assert ["✓" in line for line in lines] == [j // 5 == 3 for j in want]
    ex._update({"owner": ex.query, "new": 1})     # the observer called directly
    ex.query.value = 1
    assert _shown_images(ex.view.value) == _thumbs(paths, [1])


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
    assert ex.tabs.titles[1] == widgets.LIVE_TITLE
    ex.query.value = 4
    assert "ranked <b>1</b>" in ex.verdict.value and "hit" in ex.verdict.value
    ex.query.value = 5
    # image 1's column 5 has scores (0, 0, 2): images scoring >= 0 are all three -> rank 3
    assert "ranked <b>3</b>" in ex.verdict.value and "miss" in ex.verdict.value
    ex.k.value = 3
    assert "hit" in ex.verdict.value


def test_spread_queries_span_best_to_worst():
    ranks = np.array([5, 1, 3, 1, 9, 2, 2])
    # distinct ranks 1 2 3 5 9; three evenly spaced: 1, 3, 9 -> their first queries 1, 2, 4
    assert widgets.spread_queries(ranks, 3) == [1, 2, 4]
    assert widgets.spread_queries(np.ones(10, int), 4) == [0, 3, 6, 9]   # one rank: quantiles
    assert widgets.spread_queries(ranks, 50) == [1, 3, 5, 6, 2, 0, 4]     # all, by rank


def test_thumbnails_are_small_and_faithful(tmp_path):
    rng = np.random.default_rng(1)
    big = np.kron(rng.integers(0, 6, (4, 4)) * 40, np.ones((28, 28), int)).astype(np.uint8)
    Image.fromarray(np.stack([big, 255 - big, big // 2], -1)).save(tmp_path / "big.png")
    thumb = Image.open(io.BytesIO(widgets.thumbnail_png(tmp_path / "big.png", 56)))
    assert thumb.size == (56, 56)
    small = np.asarray(Image.open(tmp_path / "big.png").convert("RGB"))[::2, ::2].astype(int)
    assert np.abs(np.asarray(thumb.convert("RGB")).astype(int) - small).mean() < 8
    with pytest.raises(FileNotFoundError, match="missing.png"):
        widgets.thumbnail_png(tmp_path / "missing.png", 56)


def test_book_views_are_precomputed_naive_topk_and_linked(data):
    from ipywidgets.embed import embed_data

    sims, captions, paths = data
    ex = widgets.retrieval_explorer(sims, captions, paths, k=3)
    assert ex.link.source == (ex.book_query, "index")
    assert ex.link.target == (ex.book_views, "selected_index")
    labels = [label for label, _ in ex.book_query.options]
    assert len(labels) == len(ex.book_views.children) == 6 + 4      # 6 of 20 captions, 4 images
    seen = {"caption": [], "image": []}
    for label, view in zip(labels, ex.book_views.children):
        q = int(re.search(r"(?:caption|image) (\d+)", label).group(1))
        if label.startswith("caption"):
            rank, want = _naive_t2i_rank(sims, q), _naive_top(sims[:, q], 3)
            assert _shown_images(view.value) == _thumbs(paths, want)
            assert ["✓" in f for f in _figures(view.value)] == [i == q // 5 for i in want]
            assert f"caption {q}:</b> {captions[q]}" in view.value
        else:
            rank, want = _naive_i2t_rank(sims, q), _naive_top(sims[q], 3)
            assert _shown_images(view.value) == _thumbs(paths, [q])
            lines = _lines(view.value)
            assert len(lines) == 3
            assert all(f"caption number {j}" in line for j, line in zip(want, lines))
            assert ["✓" in line for line in lines] == [j // 5 == q for j in want]
        assert f"rank {rank})" in label
        seen[label.split()[0]].append(rank)
    t2i = [_naive_t2i_rank(sims, j) for j in range(20)]
    assert seen["caption"][0] == min(t2i) and seen["caption"][-1] == max(t2i)
    assert seen["caption"] == sorted(seen["caption"]) and len(seen["image"]) == 4
    state = embed_data(views=[ex])["manager_state"]["state"]
    assert state[ex.link.model_id]["model_name"] == "LinkModel"
    assert sum(isinstance(x, w.HTML) for x in _tree(ex.book_views)) == len(labels)  # one per view


def test_metric_book_views_follow_naive_ranks():
    rng = np.random.default_rng(3)
    sims = rng.normal(size=(6, 30)) + 1.5 * np.repeat(np.eye(6), 5, axis=1)
    ex = widgets.metric_explorer(sims, 5, k=5)
    for (label, _), view in zip(ex.book_query.options, ex.book_views.children):
        q = int(label.rsplit(" ", 1)[1])
        rank = (_naive_t2i_rank(sims, q) if label.startswith(widgets.CAPTION_QUERY)
                else _naive_i2t_rank(sims, q))
        assert f"ranked <b>{rank}</b>" in view.value
        for k in (1, 5, 10):
            assert f"R@{k} {'hit' if rank <= k else 'miss'}" in view.value
    t2i = np.array([_naive_t2i_rank(sims, j) for j in range(30)])
    i2t = np.array([_naive_i2t_rank(sims, i) for i in range(6)])
    ks = [int(label) for label, _ in ex.book_k.options]
    assert ks == [1, 2, 5, 10, 20]
    for k, view in zip(ks, ex.book_recall.children):
        assert f"R@{k} = <b>{100 * np.mean(t2i <= k):.1f}%</b>; over all 6" in view.value
        assert view.value.endswith(f"R@{k} = <b>{100 * np.mean(i2t <= k):.1f}%</b>.")
    assert ex.book_k.index == ex.book_recall.selected_index == ks.index(5)
    assert ex.k_link.source == (ex.book_k, "index")
    assert ex.k_link.target == (ex.book_recall, "selected_index")

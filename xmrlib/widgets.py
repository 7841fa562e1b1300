"""Interactive explorers for the chapters, built from standard ipywidgets only.

Each explorer is a ``Tab`` of two views:

* **chosen queries** (works in the HTML book): the views of a few queries, chosen so that the
  rank of their ground truth spans best to worst, are computed when the chapter runs. A
  ``Dropdown`` whose ``index`` is ``jslink``-ed to a ``Stack``'s ``selected_index`` switches
  between them in the browser: the link is a widget model that the page's widget manager runs,
  so the static page needs no kernel (checked in headless Chromium by ``scripts/check_html.py``).
* **any query** (live): controls whose observers recompute the view in Python; it needs a
  running kernel (Jupyter), and in the HTML book it shows its saved snapshot and says so.

papermill saves the state of every widget with all its defaults (about 1 KB per model), and
the book embeds it; so each view is a single ``HTML`` widget, with images inlined as small PNG
thumbnails (``data:`` URIs), rather than a tree of boxes. No ``Output`` widget and no
kernel-side matplotlib.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as w
import numpy as np
from PIL import Image

from xmrlib.evaluation.ranking import retrieval_ranks, topk_for_caption, topk_for_image
from xmrlib.viz import CORRECT

EXPLORER_CLASS = "xmr-explorer"          # CSS hooks read by scripts/check_html.py
SWITCH_CLASS = "xmr-switch"
VIEWS_CLASS = "xmr-views"
BOOK_NOTE = ("<i>These views were computed when the chapter ran; choosing works in the HTML "
             "book too.</i>")
LIVE_NOTE = ("<i>Live: needs a running kernel (open the notebook in Jupyter). In the HTML book "
             "these controls do not respond; they show a static snapshot.</i>")
BOOK_TITLE = "chosen queries"
LIVE_TITLE = "live (Jupyter)"
CAPTION_QUERY = "caption → images"
IMAGE_QUERY = "image → captions"
MISS = "#D55E00"                         # vermilion: a miss (the palette's contrast to CORRECT)
BOOK_KS = (1, 2, 5, 10, 20)              # the K values of the metric explorer's book view


def thumbnail_png(path: str | Path, size: int, colors: int | None = 32) -> bytes:
    """PNG bytes of the image at ``path``, scaled down so that its longer side is at most
    ``size`` pixels and, unless ``colors`` is None, reduced to that many colours (Shapes scenes
    are flat-coloured: 32 colours look the same and take a third of the bytes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    with Image.open(path) as im:
        thumb = im.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    if colors is not None:
        thumb = thumb.quantize(colors)
    out = io.BytesIO()
    thumb.save(out, format="PNG", optimize=True)
    return out.getvalue()


def spread_queries(ranks: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` query indices, ordered by rank, whose ranks span best to worst: the first
    query at each of ``n`` evenly spaced distinct rank values, topped up (when there are fewer
    distinct ranks) with the queries at evenly spaced positions of the order by rank."""
    ranks = np.asarray(ranks)
    n = min(n, len(ranks))
    order = np.lexsort((np.arange(len(ranks)), ranks))            # by rank, then by index
    levels = np.unique(ranks)
    picked = levels[np.linspace(0, len(levels) - 1, num=min(n, len(levels))).round().astype(int)]
    chosen = {int(order[np.searchsorted(ranks[order], r)]) for r in picked}
    for position in np.linspace(0, len(ranks) - 1, num=n).round().astype(int):
        if len(chosen) == n:
            break
        chosen.add(int(order[position]))
    return sorted(chosen, key=lambda q: (ranks[q], q))


def switcher(labels: Sequence[str], views: Sequence[w.Widget], description: str,
             index: int = 0) -> tuple[w.Dropdown, w.Stack, w.Link]:
    """A Dropdown of ``labels`` whose ``index`` is jslinked to a Stack of ``views``: choosing a
    label shows its view, in Jupyter and in the static HTML page alike."""
    if len(labels) != len(views) or not views:
        raise ValueError(f"switcher: {len(labels)} labels for {len(views)} views")
    choose = w.Dropdown(options=[(label, i) for i, label in enumerate(labels)], index=index,
                        description=description, layout=w.Layout(width="max-content"))
    stack = w.Stack(children=list(views), selected_index=index)
    choose.add_class(SWITCH_CLASS)
    stack.add_class(VIEWS_CLASS)
    return choose, stack, w.jslink((choose, "index"), (stack, "selected_index"))


def _check_sims(sims: np.ndarray, captions_per_image: int) -> np.ndarray:
    sims = np.asarray(sims)
    if sims.ndim != 2 or sims.shape[1] != captions_per_image * sims.shape[0]:
        raise ValueError(f"sims has shape {sims.shape}: expected (n_images, "
                         f"{captions_per_image} * n_images), captions image-major")
    return sims


def _mark(text: str, ok: bool) -> str:
    text = html.escape(text)
    return f"<b style='color:{CORRECT}'>✓ {text}</b>" if ok else f"&nbsp;&nbsp;&nbsp;{text}"


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _tabs(book: Sequence[w.Widget], live: Sequence[w.Widget], n_book: int) -> w.Tab:
    return w.Tab(children=[w.VBox([w.HTML(BOOK_NOTE), *book]), w.VBox([w.HTML(LIVE_NOTE), *live])],
                 titles=(f"{n_book} {BOOK_TITLE}", LIVE_TITLE))


class RetrievalExplorer(w.VBox):
    """Pick a query (a caption or an image); see its top-K results, ground truth marked.

    ``book_query`` / ``book_views``: the chosen queries (both directions, ranks from best to
    worst) and their precomputed top-``k`` views, switched in the browser. ``mode``, ``query``
    and ``k``: the live controls, whose view is ``view``. A view is one ``HTML`` widget: the
    query, then for a caption query the retrieved images (thumbnails in ``<figure>``s), for an
    image query its thumbnail and the retrieved captions (``<li>``s), best first, with the
    ground truth marked ✓.
    """

    def __init__(self, sims: np.ndarray, captions: Sequence[str],
                 image_paths: Sequence[str | Path], captions_per_image: int = 5, k: int = 5,
                 max_k: int = 10, image_width: int = 96, n_queries: int = 6) -> None:
        self.sims = _check_sims(sims, captions_per_image)
        n_img, n_cap = self.sims.shape
        if len(captions) != n_cap or len(image_paths) != n_img:
            raise ValueError(f"retrieval_explorer: {len(captions)} captions and "
                             f"{len(image_paths)} image paths for sims of shape {self.sims.shape}")
        self.captions, self.cpi, self.width = list(captions), captions_per_image, image_width
        self._paths, self._thumbs = list(image_paths), {}
        ranks_i2t, ranks_t2i = retrieval_ranks(self.sims, captions_per_image)
        k = min(k, max_k)
        labels, views = [], []
        for j in spread_queries(ranks_t2i, n_queries):
            labels.append(f"caption {j} (its image at rank {ranks_t2i[j]}): "
                          f"{_short(self.captions[j])}")
            views.append(w.HTML(self.caption_html(j, k)))
        for i in spread_queries(ranks_i2t, n_queries):
            labels.append(f"image {i} (first true caption at rank {ranks_i2t[i]})")
            views.append(w.HTML(self.image_html(i, k)))
        self.book_query, self.book_views, self.link = switcher(labels, views, "query")
        self.mode = w.ToggleButtons(options=[CAPTION_QUERY, IMAGE_QUERY], value=CAPTION_QUERY,
                                    description="query")
        self.query = w.BoundedIntText(value=0, min=0, max=n_cap - 1, description="index")
        self.k = w.IntSlider(value=k, min=1, max=max_k, description="K")
        self.view = w.HTML()
        for control in (self.mode, self.query, self.k):
            control.observe(self._update, names="value")
        self.tabs = _tabs([self.book_query, self.book_views],
                          [w.HBox([self.mode, self.query, self.k]), self.view], len(labels))
        super().__init__([self.tabs])
        self.add_class(EXPLORER_CLASS)
        self._update()

    def _img(self, i: int) -> str:
        """An ``<img>`` of image ``i``'s thumbnail (encoded once per image)."""
        if i not in self._thumbs:
            png = thumbnail_png(self._paths[i], self.width)
            self._thumbs[i] = base64.b64encode(png).decode("ascii")
        return (f"<img src='data:image/png;base64,{self._thumbs[i]}' width='{self.width}' "
                f"alt='image {i}' style='display:block'>")

    def caption_html(self, q: int, k: int) -> str:
        """The view of caption query ``q``: its top-``k`` images."""
        figures = "".join(
            f"<figure style='margin:0 8px 8px 0'>{self._img(i)}<figcaption>"
            f"{_mark(f'#{r + 1} image {i}', i == q // self.cpi)}</figcaption></figure>"
            for r, i in enumerate(topk_for_caption(self.sims, q, k)))
        return (f"<b>caption {q}:</b> {html.escape(self.captions[q])}"
                f"<div style='display:flex;flex-wrap:wrap'>{figures}</div>")

    def image_html(self, q: int, k: int) -> str:
        """The view of image query ``q``: its top-``k`` captions."""
        items = "".join(f"<li>{_mark(f'#{r + 1} {self.captions[j]}', j // self.cpi == q)}</li>"
                        for r, j in enumerate(topk_for_image(self.sims, q, k)))
        return (f"<b>image {q}</b>{self._img(q)}"
                f"<ul style='list-style:none;padding-left:0'>{items}</ul>")

    def _update(self, change: dict | None = None) -> None:
        if change is not None and change["owner"] is self.mode:
            n = len(self.captions) if self.mode.value == CAPTION_QUERY else len(self._paths)
            self.query.max = n - 1   # clamps value, which re-enters _update once
            if self.query.value > self.query.max:
                return
        render = self.caption_html if self.mode.value == CAPTION_QUERY else self.image_html
        self.view.value = render(self.query.value, self.k.value)


def retrieval_explorer(sims: np.ndarray, captions: Sequence[str],
                       image_paths: Sequence[str | Path], captions_per_image: int = 5,
                       k: int = 5) -> RetrievalExplorer:
    """The retrieval explorer of chapters 02-04 (see :class:`RetrievalExplorer`)."""
    return RetrievalExplorer(sims, captions, image_paths, captions_per_image, k)


def _hits_text(rank: int, ks: Sequence[int] = (1, 5, 10)) -> str:
    hits = [f"<b style='color:{CORRECT if rank <= k else MISS}'>R@{k} "
            f"{'hit' if rank <= k else 'miss'}</b>" for k in ks]
    return ", ".join(hits) + f" (a hit for every K ≥ {rank})"


class MetricExplorer(w.VBox):
    """Chapter 01: choose a direction, a query and K; see the rank of the ground truth and
    whether it counts as a hit for R@K (a caption query hits if its image is in the top K; an
    image query if any of its captions is).

    ``book_query`` / ``book_views``: the chosen queries' ranks and hits; ``book_k`` /
    ``book_recall``: R@K over all queries for each K of ``BOOK_KS`` (both switched in the
    browser). ``mode``, ``query``, ``k`` and ``verdict``: the live explorer.
    """

    def __init__(self, sims: np.ndarray, captions_per_image: int = 5, k: int = 5,
                 max_k: int = 20, n_queries: int = 6) -> None:
        self.sims = _check_sims(sims, captions_per_image)
        self.ranks_i2t, self.ranks_t2i = retrieval_ranks(self.sims, captions_per_image)
        k = min(k, max_k)
        labels, views = [], []
        for mode, ranks, what in ((CAPTION_QUERY, self.ranks_t2i, "its image"),
                                  (IMAGE_QUERY, self.ranks_i2t, "its best caption")):
            for q in spread_queries(ranks, n_queries):
                labels.append(f"{mode}: {q}")
                views.append(w.HTML(f"{mode}, query {q}: {what} is ranked <b>{ranks[q]}</b> → "
                                    + _hits_text(int(ranks[q]))))
        self.book_query, self.book_views, self.link = switcher(labels, views, "query")
        ks = sorted({K for K in BOOK_KS if K <= max_k} | {k})
        recalls = [w.HTML(f"Over all {len(self.ranks_t2i)} caption queries R@{K} = "
                          f"<b>{self._recall(self.ranks_t2i, K):.1f}%</b>; over all "
                          f"{len(self.ranks_i2t)} image queries R@{K} = "
                          f"<b>{self._recall(self.ranks_i2t, K):.1f}%</b>.") for K in ks]
        self.book_k, self.book_recall, self.k_link = switcher(
            [str(K) for K in ks], recalls, "K", index=ks.index(k))
        self.mode = w.ToggleButtons(options=[CAPTION_QUERY, IMAGE_QUERY], value=CAPTION_QUERY,
                                    description="query")
        self.query = w.IntSlider(value=0, min=0, max=len(self.ranks_t2i) - 1,
                                 description="index")
        self.k = w.IntSlider(value=k, min=1, max=max_k, description="K")
        self.verdict = w.HTML()
        for control in (self.mode, self.query, self.k):
            control.observe(self._update, names="value")
        self.tabs = _tabs([self.book_query, self.book_views, self.book_k, self.book_recall],
                          [self.mode, self.query, self.k, self.verdict], len(labels))
        super().__init__([self.tabs])
        self.add_class(EXPLORER_CLASS)
        self._update()

    @staticmethod
    def _recall(ranks: np.ndarray, k: int) -> float:
        return 100.0 * float(np.mean(ranks <= k))

    def _update(self, change: dict | None = None) -> None:
        ranks = self.ranks_t2i if self.mode.value == CAPTION_QUERY else self.ranks_i2t
        self.query.max = len(ranks) - 1
        q, k = min(self.query.value, len(ranks) - 1), self.k.value
        rank = int(ranks[q])
        hit = rank <= k
        what = "its image" if self.mode.value == CAPTION_QUERY else "its best caption"
        self.verdict.value = (
            f"query {q}: {what} is ranked <b>{rank}</b> → "
            f"<b style='color:{CORRECT if hit else MISS}'>{'hit' if hit else 'miss'}</b>"
            f" at K = {k}. Over all {len(ranks)} queries, R@{k} = {self._recall(ranks, k):.1f}%.")


def metric_explorer(sims: np.ndarray, captions_per_image: int = 5, k: int = 5) -> MetricExplorer:
    """The rank / hit explorer of chapter 01 (see :class:`MetricExplorer`)."""
    return MetricExplorer(sims, captions_per_image, k)

"""Interactive explorers for the chapters, built from standard ipywidgets only.

papermill saves widget state, so the initial state of every widget here renders in the static
HTML book, where callbacks do not run: each explorer therefore draws its first results eagerly
(no ``Output`` widget, no kernel-side matplotlib) and carries a visible note that the page shows
a static snapshot. Images travel as PNG bytes in ``ipywidgets.Image``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as w
import numpy as np

from xmrlib.evaluation.ranking import retrieval_ranks, topk_for_caption, topk_for_image
from xmrlib.viz import CORRECT

STATIC_NOTE = ("<i>static snapshot: run the notebook to interact</i> (in the HTML book the "
               "controls do not respond)")
CAPTION_QUERY = "caption → images"
IMAGE_QUERY = "image → captions"


def _png_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    return path.read_bytes()


def _check_sims(sims: np.ndarray, captions_per_image: int) -> np.ndarray:
    sims = np.asarray(sims)
    if sims.ndim != 2 or sims.shape[1] != captions_per_image * sims.shape[0]:
        raise ValueError(f"sims has shape {sims.shape}: expected (n_images, "
                         f"{captions_per_image} * n_images), captions image-major")
    return sims


def _mark(text: str, ok: bool) -> str:
    text = html.escape(text)
    return f"<b style='color:{CORRECT}'>✓ {text}</b>" if ok else f"&nbsp;&nbsp;&nbsp;{text}"


class RetrievalExplorer(w.VBox):
    """Pick a query (a caption or an image) and K; see the top-K results, ground truth marked.

    Children: the static note, the controls (``mode``, ``query``, ``k``), the query view and the
    results box. ``results`` holds, for caption queries, one ``VBox(Image, HTML)`` per retrieved
    image; for image queries, one ``HTML`` line per retrieved caption.
    """

    def __init__(self, sims: np.ndarray, captions: Sequence[str],
                 image_paths: Sequence[str | Path], captions_per_image: int = 5, k: int = 5,
                 max_k: int = 10, image_width: int = 96) -> None:
        self.sims = _check_sims(sims, captions_per_image)
        n_img, n_cap = self.sims.shape
        if len(captions) != n_cap or len(image_paths) != n_img:
            raise ValueError(f"retrieval_explorer: {len(captions)} captions and "
                             f"{len(image_paths)} image paths for sims of shape {self.sims.shape}")
        self.captions, self.cpi, self.width = list(captions), captions_per_image, image_width
        self._png = [_png_bytes(p) for p in image_paths]
        self.mode = w.ToggleButtons(options=[CAPTION_QUERY, IMAGE_QUERY], value=CAPTION_QUERY,
                                    description="query")
        self.query = w.BoundedIntText(value=0, min=0, max=n_cap - 1, description="index")
        self.k = w.IntSlider(value=min(k, max_k), min=1, max=max_k, description="K")
        self.query_view = w.VBox()
        self.results = w.Box(layout=w.Layout(flex_flow="row wrap"))
        for control in (self.mode, self.query, self.k):
            control.observe(self._update, names="value")
        super().__init__([w.HTML(STATIC_NOTE), w.HBox([self.mode, self.query, self.k]),
                          self.query_view, self.results])
        self._update()

    def _image(self, i: int) -> w.Image:
        return w.Image(value=self._png[i], format="png", width=self.width)

    def _update(self, change: dict | None = None) -> None:
        if change is not None and change["owner"] is self.mode:
            n = len(self.captions) if self.mode.value == CAPTION_QUERY else len(self._png)
            self.query.max = n - 1   # clamps value, which re-enters _update once
            if self.query.value > self.query.max:
                return
        q, k = self.query.value, self.k.value
        if self.mode.value == CAPTION_QUERY:
            top = topk_for_caption(self.sims, q, k)
            self.query_view.children = [w.HTML(f"<b>caption {q}:</b> "
                                               f"{html.escape(self.captions[q])}")]
            self.results.layout.flex_flow = "row wrap"
            self.results.children = [
                w.VBox([self._image(i), w.HTML(_mark(f"#{r + 1} image {i}", i == q // self.cpi))])
                for r, i in enumerate(top)]
        else:
            top = topk_for_image(self.sims, q, k)
            self.query_view.children = [w.HTML(f"<b>image {q}</b>"), self._image(q)]
            self.results.layout.flex_flow = "column"
            self.results.children = [
                w.HTML(_mark(f"#{r + 1} {self.captions[j]}", j // self.cpi == q))
                for r, j in enumerate(top)]


def retrieval_explorer(sims: np.ndarray, captions: Sequence[str],
                       image_paths: Sequence[str | Path], captions_per_image: int = 5,
                       k: int = 5) -> RetrievalExplorer:
    """The retrieval explorer of chapters 02-04 (see :class:`RetrievalExplorer`)."""
    return RetrievalExplorer(sims, captions, image_paths, captions_per_image, k)


class MetricExplorer(w.VBox):
    """Chapter 01: choose a direction, a query and K; see the rank of the ground truth and
    whether it counts as a hit for R@K (a caption query hits if its image is in the top K; an
    image query if any of its captions is)."""

    def __init__(self, sims: np.ndarray, captions_per_image: int = 5, k: int = 5,
                 max_k: int = 20) -> None:
        self.sims = _check_sims(sims, captions_per_image)
        self.ranks_i2t, self.ranks_t2i = retrieval_ranks(self.sims, captions_per_image)
        self.mode = w.ToggleButtons(options=[CAPTION_QUERY, IMAGE_QUERY], value=CAPTION_QUERY,
                                    description="query")
        self.query = w.IntSlider(value=0, min=0, max=len(self.ranks_t2i) - 1,
                                 description="index")
        self.k = w.IntSlider(value=min(k, max_k), min=1, max=max_k, description="K")
        self.verdict = w.HTML()
        for control in (self.mode, self.query, self.k):
            control.observe(self._update, names="value")
        super().__init__([w.HTML(STATIC_NOTE), self.mode, self.query, self.k, self.verdict])
        self._update()

    def _update(self, change: dict | None = None) -> None:
        ranks = self.ranks_t2i if self.mode.value == CAPTION_QUERY else self.ranks_i2t
        self.query.max = len(ranks) - 1
        q, k = min(self.query.value, len(ranks) - 1), self.k.value
        rank = int(ranks[q])
        hit = rank <= k
        what = "its image" if self.mode.value == CAPTION_QUERY else "its best caption"
        recall = 100.0 * float(np.mean(ranks <= k))
        self.verdict.value = (
            f"query {q}: {what} is ranked <b>{rank}</b> → "
            f"<b style='color:{CORRECT if hit else '#D55E00'}'>{'hit' if hit else 'miss'}</b>"
            f" at K = {k}. Over all {len(ranks)} queries, R@{k} = {recall:.1f}%.")


def metric_explorer(sims: np.ndarray, captions_per_image: int = 5, k: int = 5) -> MetricExplorer:
    """The rank / hit explorer of chapter 01 (see :class:`MetricExplorer`)."""
    return MetricExplorer(sims, captions_per_image, k)

"""Figures of the book: one place for every plot the chapters show.

Every function takes data (never loads results files; images are read from the paths given) and
returns a ``matplotlib.figure.Figure`` (results tables: :mod:`xmrlib.tables`). Importing this
module changes no global state; chapters call :func:`use_book_style` once in their setup cell.

Colour: Shapes scenes use colour as an attribute, so every categorical colour here comes from the
Okabe-Ito palette (Okabe and Ito, "Color Universal Design", 2008), which stays distinguishable for
the common forms of colour blindness; continuous maps use ``viridis``/``cividis``. Markers double
the categorical coding where points of several kinds share a plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xmrlib.evaluation.ranking import retrieval_ranks, topk_for_caption, topk_for_image
from xmrlib.losses import used_negatives
from xmrlib.tables import DEFAULT_COLUMNS, mean_sd_table, results_table, style_results

#: the chapters' names; the last seven are re-exported from evaluation.ranking and tables
__all__ = ["PALETTE", "CORRECT", "WRONG", "MARKERS", "NAMED_COLORS", "use_book_style",
           "category_colors", "plot_sim_heatmap", "plot_rank_histogram", "plot_training_curves",
           "plot_batch_negatives", "plot_recall_vs", "plot_cost_quality", "plot_degeneration",
           "tsne_embed", "tsne_joint", "tsne_kinds", "tsne_panels", "gallery_caption_query",
           "gallery_image_query", "plot_word_attention", "plot_region_self_attention",
           "retrieval_ranks", "topk_for_caption", "topk_for_image", "DEFAULT_COLUMNS",
           "mean_sd_table", "results_table", "style_results"]


#: Okabe-Ito colour-blind-safe palette (black moved last, yellow late: weak on white).
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                            "#F0E442", "#000000")
CORRECT = "#009E73"   # bluish green: ground truth / hit
WRONG = "#D55E00"     # vermillion: miss
MARKERS: tuple[str, ...] = ("o", "^", "s", "D", "v", "P", "X", "*")


def use_book_style() -> None:
    """Set the book's matplotlib style (small readable figures, Okabe-Ito colour cycle).

    Call it in a chapter's setup cell; importing :mod:`xmrlib.viz` never changes ``rcParams``.
    """
    from cycler import cycler

    plt.rcParams.update({
        "figure.figsize": (6.0, 3.6), "figure.dpi": 100, "savefig.dpi": 150,
        "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "axes.prop_cycle": cycler(color=PALETTE),
        "image.cmap": "viridis", "figure.constrained_layout.use": True,
    })


#: Okabe-Ito stand-ins for colour names, so that a label "red" is drawn in a red.
NAMED_COLORS: dict[str, str] = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73",
                                "purple": "#CC79A7", "pink": "#CC79A7", "cyan": "#56B4E9",
                                "red": "#D55E00", "yellow": "#F0E442", "black": "#000000"}


def category_colors(labels: Sequence[Any]) -> dict[Any, str]:
    """Map each distinct label to an Okabe-Ito colour: colour names (``"red"``, ``"blue"``, ...)
    to their Okabe-Ito stand-in (:data:`NAMED_COLORS`), other labels (in sorted order) to the
    palette colours not taken, cycling when more than eight are needed."""
    distinct = sorted(set(labels), key=str)
    named = {lab: NAMED_COLORS[str(lab).lower()] for lab in distinct
             if str(lab).lower() in NAMED_COLORS}
    free = [c for c in PALETTE if c not in named.values()] or list(PALETTE)
    others = [lab for lab in distinct if lab not in named]
    return {**named, **{lab: free[i % len(free)] for i, lab in enumerate(others)}}


def _new_ax(ax: Axes | None, figsize: tuple[float, float] = (5.0, 3.6)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


# --------------------------------------------------------------------- similarities and ranks

def plot_sim_heatmap(sims: np.ndarray, captions_per_image: int = 5, ax: Axes | None = None,
                     max_images: int = 20) -> Figure:
    """Heatmap of image x caption similarities; ground-truth blocks outlined.

    Shows the first ``max_images`` images and their captions.
    """
    n = min(max_images, sims.shape[0])
    block = np.asarray(sims)[:n, :n * captions_per_image]
    fig, ax = _new_ax(ax, (6.0, 2.8))
    im = ax.imshow(block, aspect="auto", cmap="viridis", interpolation="nearest")
    for i in range(n):
        ax.add_patch(Rectangle((i * captions_per_image - 0.5, i - 0.5), captions_per_image, 1,
                               fill=False, edgecolor="white", linewidth=1.2))
    ax.set(xlabel="caption", ylabel="image", title="similarity (ground truth outlined)")
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def plot_rank_histogram(ranks_i2t: np.ndarray, ranks_t2i: np.ndarray,
                        max_rank: int = 50) -> Figure:
    """Histograms of the ground truth's 1-based ranks, both directions; ranks beyond
    ``max_rank`` share one last bin."""
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.8), sharey=False, layout="constrained")
    worst = int(max(np.max(ranks_i2t), np.max(ranks_t2i)))
    top = min(max_rank, worst)                  # last bin: ranks beyond max_rank, if any
    bins = np.arange(1, top + 2 + (worst > max_rank)) - 0.5
    xlabel = "rank of ground truth" + (f" ({top + 1} = beyond {top})" if worst > top else "")
    for ax, ranks, title, colour in [(axes[0], ranks_i2t, "image → text", PALETTE[0]),
                                     (axes[1], ranks_t2i, "text → image", PALETTE[1])]:
        r = np.minimum(np.asarray(ranks), top + 1)
        ax.hist(r, bins=bins, color=colour)
        ax.set(xlabel=xlabel, ylabel="queries", title=f"{title}: median {np.median(ranks):.0f}")
    return fig


# ------------------------------------------------------------------------------------ training

def _frame(rows: Any) -> pd.DataFrame:
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def plot_training_curves(histories: Mapping[str, Mapping[str, Any]], smooth: int = 20,
                         metric: str = "rsum") -> Figure:
    """Loss per step (rolling mean over ``smooth`` steps) and dev ``metric`` per epoch, per run.

    ``histories[name]`` is a training history as :mod:`xmrlib.train` writes it: a mapping with
    ``"steps"`` (rows ``step, epoch, loss``) and ``"epochs"`` (rows ``epoch, rsum, ...``), each a
    list of dicts or a DataFrame.
    """
    fig, (ax_loss, ax_dev) = plt.subplots(1, 2, figsize=(8.0, 3.0), layout="constrained")
    for (name, hist), colour in zip(histories.items(), PALETTE * 4):
        for key in ("steps", "epochs"):
            if key not in hist:
                raise KeyError(f"plot_training_curves: history {name!r} lacks {key!r}")
        steps, epochs = _frame(hist["steps"]), _frame(hist["epochs"])
        loss = steps["loss"].rolling(smooth, min_periods=1).mean()
        ax_loss.plot(steps["step"], loss, color=colour, label=name)
        ax_dev.plot(epochs["epoch"], epochs[metric], color=colour, marker="o", label=name)
    ax_loss.set(xlabel="step", ylabel=f"loss (mean of {smooth} steps)", title="training loss")
    ax_dev.set(xlabel="epoch", ylabel=f"dev {metric}", title=f"dev {metric}")
    ax_dev.legend()
    return fig


def plot_batch_negatives(scores: np.ndarray, max_violation: bool, margin: float = 0.2,
                         ax: Axes | None = None) -> Figure:
    """One batch's score matrix with the positives (diagonal) and the negatives the loss uses.

    Circles mark negatives used by the image query of their row (image → text), triangles those
    used by the caption query of their column (text → image); see :func:`used_negatives`.
    The marker collections carry ``gid`` ``"positive"``, ``"i2t"`` and ``"t2i"``.
    """
    s = np.asarray(scores)
    b = s.shape[0]
    i2t, t2i = used_negatives(s, max_violation, margin)
    fig, ax = _new_ax(ax, (4.6, 4.8))
    im = ax.imshow(s, cmap="cividis", interpolation="nearest")
    ax.scatter(np.arange(b), np.arange(b), marker="s", s=140, facecolors="none",
               edgecolors=PALETTE[3], linewidths=2, gid="positive", label="positive pair")
    rows, cols = np.nonzero(i2t)
    ax.scatter(cols - 0.15, rows, marker="o", s=40, color=PALETTE[1], edgecolors="black",
               linewidths=0.5, gid="i2t", label="negative used (image query, row)")
    rows, cols = np.nonzero(t2i)
    ax.scatter(cols + 0.15, rows, marker="^", s=40, color=PALETTE[4], edgecolors="black",
               linewidths=0.5, gid="t2i", label="negative used (caption query, column)")
    name = "max violation (VSE++)" if max_violation else "sum of violations (VSE0)"
    ax.set(xlabel="caption", ylabel="image", title=f"{name}, margin {margin}",
           xticks=range(b), yticks=range(b))
    ax.grid(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="score")
    return fig


def plot_recall_vs(x: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str,
                   ylabel: str = "R@1", ax: Axes | None = None, logx: bool = False) -> Figure:
    """Line plot of one metric against a swept parameter, one line (and marker) per series."""
    fig, ax = _new_ax(ax)
    for (name, ys), colour, marker in zip(series.items(), PALETTE * 4, MARKERS * 4):
        if len(ys) != len(x):
            raise ValueError(f"plot_recall_vs: series {name!r} has {len(ys)} values, "
                             f"expected {len(x)} (one per x)")
        ax.plot(x, ys, color=colour, marker=marker, label=name)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    return fig


def plot_cost_quality(df: pd.DataFrame, x: str = "eval_time_s", y: str = "rsum",
                      label: str = "model", ax: Axes | None = None, logx: bool = True,
                      xlabel: str | None = None, ylabel: str | None = None,
                      title: str | None = None) -> Figure:
    """Scatter of a cost column against a quality column, each point named by ``label``.

    Markers use the palette's strong colours (not its pale yellow) with a dark edge; the names
    are placed by :func:`_label_points` so that they do not overlap. ``xlabel`` / ``ylabel``
    should name the quantity and its unit (the column names are the fallback).
    """
    for c in (x, y, label):
        if c not in df:
            raise KeyError(f"plot_cost_quality: frame lacks column {c!r}")
    fig, ax = _new_ax(ax, figsize=(6.4, 4.2))
    strong = [c for c in PALETTE if c != "#F0E442"]  # yellow vanishes on white
    for (_, row), colour, marker in zip(df.iterrows(), strong * 4, MARKERS * 4):
        ax.scatter(row[x], row[y], color=colour, marker=marker, s=70, edgecolors="black",
                   linewidths=0.6, zorder=3, label=row[label])
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title or "")
    _label_points(ax, df[x].to_numpy(float), df[y].to_numpy(float),
                  [str(v) for v in df[label]])
    return fig


def _label_points(ax: Axes, xs: np.ndarray, ys: np.ndarray, labels: Sequence[str],
                  fontsize: float = 8.5) -> None:
    """Name each point beside it, moving names up where they would cover a name or a marker.

    Placement is greedy in display space: from the lowest point up, a name goes right of its
    point (left first in the right third of the axes) or on the other side if it must rise less
    there, rising above every marker and every name already placed that shares its horizontal
    extent; a name moved off its point gets a thin leader line.
    """
    ax.margins(x=0.15, y=0.12)
    ax.autoscale_view()
    fig = ax.figure
    fig.canvas.draw()  # settle the layout: names are placed in the final display pixels
    renderer = fig.canvas.get_renderer()
    px = ax.transData.transform(np.column_stack([xs, ys]))  # (n, 2) display pixels
    left, right = ax.get_window_extent().x0, ax.get_window_extent().x1
    height = fontsize * fig.dpi / 72 * 1.3  # one text line in pixels
    r = 7 * fig.dpi / 72  # marker half-size in pixels
    taken = [(x - r, x + r, y - r, y + r) for x, y in px]  # boxes (x0, x1, y0, y1)
    for i in np.argsort(px[:, 1], kind="stable"):
        probe = ax.annotate(labels[i], (xs[i], ys[i]), fontsize=fontsize)
        width = probe.get_window_extent(renderer).width
        probe.remove()
        sides = [px[i, 0] + r + 2, px[i, 0] - r - 2 - width]  # right of the point, left
        if px[i, 0] > left + 2 * (right - left) / 3:
            sides.reverse()
        x0, y0 = min(((x, _rise(taken, x, width, px[i, 1] - height / 2, height))
                      for x in sides), key=lambda c: c[1])  # the side that moves it least
        taken.append((x0, x0 + width, y0, y0 + height))
        to_points = 72 / fig.dpi
        moved = y0 - (px[i, 1] - height / 2) > height / 2
        ax.annotate(labels[i], (xs[i], ys[i]), textcoords="offset points",
                    xytext=((x0 - px[i, 0]) * to_points, (y0 - px[i, 1]) * to_points),
                    fontsize=fontsize, va="bottom",
                    arrowprops=dict(arrowstyle="-", color="0.4", lw=0.6) if moved else None)


def _rise(taken: list[tuple[float, float, float, float]], x0: float, width: float, y0: float,
          height: float) -> float:
    """Lowest bottom >= ``y0`` at which a box ``width`` x ``height`` at ``x0`` overlaps none
    of the ``taken`` boxes (x0, x1, y0, y1), all in display pixels."""
    while True:
        hits = [b for b in taken if b[0] < x0 + width and x0 < b[1] and b[2] < y0 + height
                and y0 < b[3]]
        if not hits:
            return y0
        y0 = max(b[3] for b in hits) + 1


def plot_degeneration(df: pd.DataFrame, x: str = "pct_ann", y: str = "t2i_r1",
                      hue: str = "model", ax: Axes | None = None) -> Figure:
    """Recall against the percentage of annotated training images, one line per model
    (the analogue of A3VSE's Figure 1, Huang et al. 2019)."""
    for c in (x, y, hue):
        if c not in df:
            raise KeyError(f"plot_degeneration: frame lacks column {c!r}")
    fig, ax = _new_ax(ax)
    for (name, part), colour, marker in zip(df.groupby(hue, sort=True), PALETTE * 4, MARKERS * 4):
        part = part.sort_values(x)
        ax.plot(part[x], part[y], color=colour, marker=marker, label=str(name))
    ax.set(xlabel="% of training images annotated" if x == "pct_ann" else x, ylabel=y,
           title=f"{y} as annotations shrink")
    ax.legend()
    return fig


# ------------------------------------------------------------------------------------- t-SNE

def tsne_embed(x: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init) of the rows of ``x``; perplexity capped for tiny n."""
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float32)
    if x.shape[0] < 3:
        raise ValueError(f"tsne_embed: need at least 3 points, got {x.shape[0]}")
    perplexity = min(perplexity, (x.shape[0] - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def tsne_joint(img_emb: np.ndarray, cap_emb: np.ndarray, labels_img: Sequence[Any],
               labels_cap: Sequence[Any], n_pairs_linked: int = 30, captions_per_image: int = 5,
               seed: int = 0, ax: Axes | None = None, title: str | None = None,
               max_points: int = 900, perplexity: float = 30.0) -> Figure:
    """Images (circles) and captions (triangles) of a joint space in one t-SNE plot.

    Points are coloured by a scene attribute (``labels_img`` / ``labels_cap``, e.g. the colour of
    the first object); ``n_pairs_linked`` random image-caption pairs are joined by grey lines.
    Caption ``j`` belongs to image ``j // captions_per_image``. At most ``max_points`` points:
    images are subsampled (with all their captions) by ``seed``. The point collections carry
    ``gid`` ``"images"`` and ``"captions"``.
    """
    n_img = len(img_emb)
    if len(cap_emb) != captions_per_image * n_img or len(labels_cap) != len(cap_emb) \
            or len(labels_img) != n_img:
        raise ValueError(f"tsne_joint: got {n_img} images / {len(labels_img)} labels and "
                         f"{len(cap_emb)} captions / {len(labels_cap)} labels; expected "
                         f"{captions_per_image} captions per image, one label per point")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n_img, min(n_img, max_points // (1 + captions_per_image)),
                              replace=False))
    cap_keep = (keep[:, None] * captions_per_image
                + np.arange(captions_per_image)[None, :]).ravel()   # (n_keep * cpi,)
    xy = tsne_embed(np.concatenate([np.asarray(img_emb)[keep], np.asarray(cap_emb)[cap_keep]]),
                    seed=seed, perplexity=perplexity)
    xy_img, xy_cap = xy[:len(keep)], xy[len(keep):]
    li = [labels_img[i] for i in keep]
    lc = [labels_cap[j] for j in cap_keep]
    colours = category_colors([*li, *lc])
    fig, ax = _new_ax(ax, (5.0, 4.2))
    for p in rng.choice(len(cap_keep), min(n_pairs_linked, len(cap_keep)), replace=False):
        a, b = xy_img[p // captions_per_image], xy_cap[p]
        ax.plot([a[0], b[0]], [a[1], b[1]], color="grey", linewidth=0.6, alpha=0.6, zorder=1)
    ax.scatter(xy_img[:, 0], xy_img[:, 1], c=[colours[v] for v in li], marker="o", s=28,
               edgecolors="black", linewidths=0.4, zorder=3, gid="images")
    ax.scatter(xy_cap[:, 0], xy_cap[:, 1], c=[colours[v] for v in lc], marker="^", s=14,
               alpha=0.8, zorder=2, gid="captions")
    handles = [plt.Line2D([], [], color=c, marker="s", linestyle="", label=str(v))
               for v, c in colours.items()]
    handles += [plt.Line2D([], [], color="black", marker=m, linestyle="", markerfacecolor="none",
                           label=k) for k, m in (("image", "o"), ("caption", "^"))]
    ax.legend(handles=handles, fontsize=7, loc="best", frameon=False)
    ax.set(xticks=[], yticks=[], title=title or "t-SNE of the joint space")
    ax.grid(False)
    return fig


def tsne_kinds(groups: Mapping[str, np.ndarray], seed: int = 0, ax: Axes | None = None,
               title: str | None = None, max_per_kind: int = 250,
               perplexity: float = 30.0) -> Figure:
    """One t-SNE of several kinds of embeddings (e.g. A3VSE's annotated images ``v``, un-annotated
    images ``vu``, captions ``t`` and semantic sequences ``s``), each kind its colour and marker.

    At most ``max_per_kind`` points per kind (subsampled by ``seed``). Each collection's ``gid`` is
    its kind.
    """
    rng = np.random.default_rng(seed)
    parts = {k: np.asarray(v)[np.sort(rng.choice(len(v), min(len(v), max_per_kind),
                                                 replace=False))] for k, v in groups.items()}
    xy = tsne_embed(np.concatenate(list(parts.values())), seed=seed, perplexity=perplexity)
    fig, ax = _new_ax(ax, (4.6, 4.2))
    start = 0
    for (kind, emb), colour, marker in zip(parts.items(), PALETTE * 4, MARKERS * 4):
        pts = xy[start:start + len(emb)]
        start += len(emb)
        ax.scatter(pts[:, 0], pts[:, 1], color=colour, marker=marker, s=14, alpha=0.8,
                   label=kind, gid=kind)
    ax.legend(fontsize=8, frameon=False)
    ax.set(xticks=[], yticks=[], title=title or "t-SNE")
    ax.grid(False)
    return fig


def tsne_panels(panels: Mapping[str, Mapping[str, Any]], seed: int = 0,
                panel_size: float = 4.0) -> Figure:
    """Side-by-side t-SNE panels, one per entry, titled by its key.

    A panel is either the keyword arguments of :func:`tsne_joint` (it has ``img_emb``: e.g. VSE0
    vs VSE++) or a mapping kind -> embeddings for :func:`tsne_kinds` (e.g. A3VSE Figure 3a-3c).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size * len(panels), panel_size),
                             layout="constrained", squeeze=False)
    for ax, (title, panel) in zip(axes[0], panels.items()):
        if "img_emb" in panel:
            tsne_joint(**{"seed": seed, **panel}, ax=ax, title=title)
        else:
            tsne_kinds(panel, seed=seed, ax=ax, title=title)
    return fig


# ------------------------------------------------------------------------------------ images

def _image_axes(ax: Axes) -> None:
    """No ticks, a thin full frame (the book style hides the top and right spines)."""
    ax.set(xticks=[], yticks=[])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("lightgrey")


def _load_image(path: str | Path) -> np.ndarray:
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def gallery_caption_query(caption: str, image_paths_topk: Sequence[str | Path],
                          is_correct_flags: Sequence[bool],
                          scores: Sequence[float] | None = None,
                          title: str | None = None) -> Figure:
    """A caption query and its top-k retrieved images; ground truth framed green with a check."""
    k = len(image_paths_topk)
    if len(is_correct_flags) != k:
        raise ValueError(f"gallery_caption_query: {k} images but {len(is_correct_flags)} flags")
    fig, axes = plt.subplots(1, k, figsize=(1.7 * k, 2.3), layout="constrained", squeeze=False)
    for r, (ax, path, ok) in enumerate(zip(axes[0], image_paths_topk, is_correct_flags)):
        ax.imshow(_load_image(path))
        _image_axes(ax)
        label = f"#{r + 1}" + (f"  {scores[r]:.2f}" if scores is not None else "")
        ax.set_xlabel(label + ("  ✓" if ok else ""), color=CORRECT if ok else "black")
        if ok:
            for spine in ax.spines.values():
                spine.set_color(CORRECT)
                spine.set_linewidth(4)
    fig.suptitle(title or f"“{caption}”", fontsize=10)
    return fig


def gallery_image_query(image_path: str | Path, captions_topk: Sequence[str],
                        is_correct_flags: Sequence[bool],
                        scores: Sequence[float] | None = None,
                        title: str | None = None) -> Figure:
    """An image query and its top-k retrieved captions; correct ones checked and in green."""
    if len(is_correct_flags) != len(captions_topk):
        raise ValueError(f"gallery_image_query: {len(captions_topk)} captions but "
                         f"{len(is_correct_flags)} flags")
    fig, (ax_img, ax_txt) = plt.subplots(1, 2, figsize=(8.0, 2.4), layout="constrained",
                                         gridspec_kw={"width_ratios": [1, 3]})
    ax_img.imshow(_load_image(image_path))
    _image_axes(ax_img)
    ax_img.set_title(title or "query image")
    ax_txt.axis("off")
    n = len(captions_topk)
    for r, (cap, ok) in enumerate(zip(captions_topk, is_correct_flags)):
        score = f" ({scores[r]:.2f})" if scores is not None else ""
        ax_txt.text(0.0, 1 - (r + 0.5) / n, f"{'✓' if ok else '  '} #{r + 1}{score}  {cap}",
                    color=CORRECT if ok else "black", fontweight="bold" if ok else "normal",
                    va="center", fontsize=9, transform=ax_txt.transAxes)
    return fig


def _box_pixels(box: np.ndarray, h: int, w: int) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return (slice(int(round(y0 * h)), max(int(round(y1 * h)), int(round(y0 * h)) + 1)),
            slice(int(round(x0 * w)), max(int(round(x1 * w)), int(round(x0 * w)) + 1)))


def _draw_boxes(ax: Axes, image: np.ndarray, boxes: np.ndarray,
                weights: np.ndarray | None = None) -> None:
    """The image with its region boxes. With ``weights`` (R,): pixels are dimmed by the summed
    weight of the boxes covering them (attended regions bright) and each box is outlined with a
    line width growing with its weight; without: boxes outlined and numbered."""
    h, w = image.shape[:2]
    if weights is not None:
        heat = np.zeros((h, w))
        for box, wt in zip(boxes, weights):
            rows, cols = _box_pixels(box, h, w)
            heat[rows, cols] += wt
        heat /= max(float(heat.max()), 1e-12)
        image = (image * (0.2 + 0.8 * heat[..., None])).astype(np.uint8)
    ax.imshow(image)
    top = max(float(np.max(weights)), 1e-12) if weights is not None else 1.0
    for r, (x0, y0, x1, y1) in enumerate(boxes):
        rect = (x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h
        if weights is None:
            ax.add_patch(Rectangle(*rect, fill=False, edgecolor=PALETTE[r % len(PALETTE)],
                                   linewidth=2))
            ax.text(x0 * w + 2, y0 * h + 2, str(r), color="white", fontsize=8, va="top",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})
        else:
            ax.add_patch(Rectangle(*rect, fill=False, edgecolor=PALETTE[1],
                                   linewidth=0.5 + 3.0 * weights[r] / top))
    _image_axes(ax)


def plot_word_attention(image_path: str | Path, boxes: np.ndarray, attn: np.ndarray,
                        words: Sequence[str], n_regions: int | None = None,
                        ncols: int = 5) -> Figure:
    """Each word's attention over the scene's regions (SCAN text-to-image attention).

    ``boxes`` (R, 4) are ``x0, y0, x1, y1`` fractions, ``attn`` (L, R) attention weights of the
    ``L = len(words)`` words; only the first ``n_regions`` regions are drawn (the rest is
    padding). One panel per word: the scene lit by that word's weights over the boxes (
    attended pixels bright, the rest dimmed; outlines thicker with the weight) and titled with
    the word and its largest weight.
    """
    attn = np.asarray(attn, dtype=np.float64)
    boxes = np.asarray(boxes)
    n_regions = boxes.shape[0] if n_regions is None else int(n_regions)
    if attn.shape[0] != len(words) or attn.shape[1] < n_regions or boxes.shape[0] < n_regions:
        raise ValueError(f"plot_word_attention: attn {attn.shape}, boxes {boxes.shape}, "
                         f"{len(words)} words, n_regions={n_regions}: expected attn (words, R) "
                         "and boxes (R, 4) with R >= n_regions")
    image = _load_image(image_path)
    ncols = min(ncols, len(words))
    nrows = -(-len(words) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows),
                             layout="constrained", squeeze=False)
    for ax in axes.ravel()[len(words):]:
        ax.remove()
    for ax, word, weights in zip(axes.ravel(), words, attn):
        _draw_boxes(ax, image, boxes[:n_regions], weights[:n_regions])
        ax.set_title(f"{word} ({weights[:n_regions].max():.2f})", fontsize=9)
    return fig


def plot_region_self_attention(image_path: str | Path, boxes: np.ndarray, attn: np.ndarray,
                               n_regions: int | None = None) -> Figure:
    """Regions numbered on the scene beside their self-attention matrix (MMCA's region
    transformer): row ``r`` is how region ``r`` attends to the others."""
    boxes = np.asarray(boxes)
    n = boxes.shape[0] if n_regions is None else int(n_regions)
    attn = np.asarray(attn)[:n, :n]
    fig, (ax_img, ax_att) = plt.subplots(1, 2, figsize=(7.0, 3.2), layout="constrained")
    _draw_boxes(ax_img, _load_image(image_path), boxes[:n])
    ax_img.set_title("regions")
    im = ax_att.imshow(attn, cmap="magma", vmin=0, interpolation="nearest")
    ax_att.set(xlabel="attended region", ylabel="query region", xticks=range(n),
               yticks=range(n), title="region self-attention")
    ax_att.grid(False)
    fig.colorbar(im, ax=ax_att, shrink=0.8)
    return fig

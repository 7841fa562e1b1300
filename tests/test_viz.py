"""Tests of xmrlib.viz: figure contents checked against plain loops on tiny inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from xmrlib import viz  # noqa: E402
from xmrlib.losses import used_negatives  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(np.full((32, 48, 3), 200, dtype=np.uint8)).save(path)
    return path


def _by_gid(ax, gid):
    hits = [c for c in ax.collections if c.get_gid() == gid]
    assert len(hits) == 1, gid
    return hits[0]


@pytest.mark.slow
def test_import_leaves_rcparams_alone():
    import importlib
    import subprocess
    import sys

    code = ("import matplotlib as m; before = dict(m.rcParams); import xmrlib.viz; "
            "assert dict(m.rcParams) == before")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert importlib.import_module("xmrlib.viz") is viz


def test_palette_is_okabe_ito():
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                 "#000000"}
    assert set(viz.PALETTE) == okabe_ito
    with plt.rc_context():
        viz.use_book_style()
        cycle = [c.upper() for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [c.upper() for c in viz.PALETTE]


def test_category_colors_names_and_others():
    colours = viz.category_colors(["red", "blue", "circle", "square", "red"])
    assert colours["red"] == "#D55E00" and colours["blue"] == "#0072B2"
    assert colours["circle"] != colours["square"]
    assert not {colours["circle"], colours["square"]} & {"#D55E00", "#0072B2"}
    assert set(colours.values()) <= set(viz.PALETTE)


def test_sim_heatmap_and_rank_histogram():
    sims = np.random.default_rng(0).normal(size=(3, 15))
    fig = viz.plot_sim_heatmap(sims, 5)
    assert len(fig.axes[0].patches) == 3  # one ground-truth block per image
    fig = viz.plot_rank_histogram(np.array([1, 2, 2]), np.array([1, 1, 60]), max_rank=10)
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert heights[0] == 2 and heights[-1] == 1  # rank 60 lands in the overflow bin
    assert len(heights) == 11 and "11 = beyond 10" in fig.axes[1].get_xlabel()
    fig = viz.plot_rank_histogram(np.array([1, 3]), np.array([2, 2]))
    assert [p.get_height() for p in fig.axes[0].patches] == [1, 0, 1]


@pytest.mark.parametrize("max_violation", [False, True])
def test_batch_negatives_marks_the_negatives_the_loss_uses(max_violation):
    """The markers are the cells of xmrlib.losses.used_negatives (tested against a plain loop in
    test_losses.py)."""
    s = np.random.default_rng(1).uniform(-0.3, 0.6, size=(6, 6))
    want_i2t, want_t2i = used_negatives(s, max_violation, 0.2)
    assert want_i2t.any() and want_t2i.any()
    fig = viz.plot_batch_negatives(s, max_violation=max_violation, margin=0.2)
    ax = fig.axes[0]
    got_i2t = {(round(y), round(x + 0.15)) for x, y in _by_gid(ax, "i2t").get_offsets()}
    got_t2i = {(round(y), round(x - 0.15)) for x, y in _by_gid(ax, "t2i").get_offsets()}
    assert got_i2t == set(zip(*np.nonzero(want_i2t)))
    assert got_t2i == set(zip(*np.nonzero(want_t2i)))
    assert len(_by_gid(ax, "positive").get_offsets()) == 6
    if max_violation:  # the plot marks at most the one hardest negative per query
        rows = [r for r, _ in got_i2t]
        cols = [c for _, c in got_t2i]
        assert len(rows) == len(set(rows)) and len(cols) == len(set(cols))


def test_recall_vs_cost_quality_degeneration():
    fig = viz.plot_recall_vs([32, 64, 128], {"VSE0": [1, 2, 3], "VSE++": [2, 3, 5]}, "batch")
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["VSE0", "VSE++"]
    with pytest.raises(ValueError, match="VSE0"):
        viz.plot_recall_vs([1, 2], {"VSE0": [1]}, "x")
    df = pd.DataFrame({"model": ["a", "b"], "eval_time_s": [0.1, 2.0], "rsum": [100, 200]})
    assert len(viz.plot_cost_quality(df).axes[0].collections) == 2
    deg = pd.DataFrame({"model": ["vsepp"] * 3 + ["scan"] * 3, "pct_ann": [100, 10, 50] * 2,
                        "t2i_r1": [30, 5, 20, 40, 8, 25]})
    lines = viz.plot_degeneration(deg).axes[0].lines
    assert sorted(ln.get_label() for ln in lines) == ["scan", "vsepp"]
    vsepp = next(ln for ln in lines if ln.get_label() == "vsepp")
    assert list(vsepp.get_xdata()) == [10, 50, 100] and list(vsepp.get_ydata()) == [5, 20, 30]


def test_training_curves_from_history_dicts():
    hist = {"steps": [{"step": s, "epoch": 1 + s // 5, "loss": float(10 - s)} for s in range(10)],
            "epochs": [{"epoch": 1, "rsum": 50.0}, {"epoch": 2, "rsum": 80.0}]}
    fig = viz.plot_training_curves({"vse0": hist, "vsepp": {k: pd.DataFrame(v)
                                                            for k, v in hist.items()}}, smooth=2)
    loss_line = fig.axes[0].lines[0]
    assert loss_line.get_ydata()[1] == pytest.approx(9.5)  # mean of 10 and 9
    assert list(fig.axes[1].lines[1].get_ydata()) == [50.0, 80.0]
    with pytest.raises(KeyError, match="epochs"):
        viz.plot_training_curves({"x": {"steps": hist["steps"]}})


def test_tsne_joint_shape_and_seed():
    rng = np.random.default_rng(0)
    img, cap = rng.normal(size=(8, 6)), rng.normal(size=(40, 6))
    li = ["red", "blue"] * 4
    lc = [li[j // 5] for j in range(40)]
    ax1 = viz.tsne_joint(img, cap, li, lc, n_pairs_linked=4, seed=1).axes[0]
    ax2 = viz.tsne_joint(img, cap, li, lc, n_pairs_linked=4, seed=1).axes[0]
    assert _by_gid(ax1, "images").get_offsets().shape == (8, 2)
    assert _by_gid(ax1, "captions").get_offsets().shape == (40, 2)
    np.testing.assert_allclose(_by_gid(ax1, "images").get_offsets(),
                               _by_gid(ax2, "images").get_offsets())
    assert len(ax1.lines) == 4
    with pytest.raises(ValueError, match="captions per image"):
        viz.tsne_joint(img, cap[:39], li, lc[:39])


def test_tsne_panels_both_kinds():
    rng = np.random.default_rng(0)
    kinds = {k: rng.normal(size=(6, 4)) for k in ("v", "vu", "t", "s")}
    joint = {"img_emb": rng.normal(size=(4, 4)), "cap_emb": rng.normal(size=(20, 4)),
             "labels_img": [0, 1, 0, 1], "labels_cap": [j // 5 % 2 for j in range(20)]}
    fig = viz.tsne_panels({"A3VSE": kinds, "VSE++": joint}, seed=0)
    assert len(fig.axes) == 2
    assert {c.get_gid() for c in fig.axes[0].collections} == {"v", "vu", "t", "s"}
    assert fig.axes[1].get_title() == "VSE++"


def test_galleries(png):
    fig = viz.gallery_caption_query("a red circle", [png] * 3, [False, True, False])
    assert len(fig.axes) == 3
    assert "✓" in fig.axes[1].get_xlabel() and "✓" not in fig.axes[0].get_xlabel()
    fig = viz.gallery_image_query(png, ["c0", "c1"], [True, False])
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert texts[0].startswith("✓") and not texts[1].startswith("✓")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        viz.gallery_image_query(png.parent / "missing.png", ["c"], [True])


def test_word_attention_panels(png):
    boxes = np.array([[0, 0, .5, .5], [.5, .5, 1, 1], [0, 0, 0, 0]])
    attn = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0]])
    fig = viz.plot_word_attention(png, boxes, attn, ["red", "circle", "left"], n_regions=2,
                                  ncols=2)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["red (0.90)", "circle (0.80)", "left (0.50)"]
    widths = [p.get_linewidth() for p in fig.axes[0].patches]
    assert len(widths) == 2 and widths[0] > widths[1]
    shown = fig.axes[0].images[0].get_array()          # 32 x 48 scene of grey 200
    assert shown[4, 4, 0] > shown[28, 40, 0]            # the attended box is the brighter one
    fig = viz.plot_region_self_attention(png, boxes, np.eye(3), n_regions=2)
    assert fig.axes[1].images[0].get_array().shape == (2, 2)


def test_cost_quality_names_do_not_overlap_and_markers_are_strong():
    """Seven models, three of them almost on one spot (as the dual encoders are in chapter 07):
    no two names overlap, no name covers a marker, no marker is the palette's pale yellow, and
    the axes carry the titles given (not the column names)."""
    df = pd.DataFrame({"model": ["Kiros VSE", "VSE0", "VSE++", "SCAN t-i", "VSE++ (800 img)",
                                 "SCAN t-i (800 img)", "MMCA (800 img)"],
                       "eval_time_s": [0.078, 0.073, 0.075, 0.29, 0.037, 0.24, 7.7],
                       "rsum": [168.0, 167.6, 166.5, 438.3, 69.6, 260.1, 368.2]})
    fig = viz.plot_cost_quality(df, xlabel="evaluation time (s, log scale)", ylabel="rsum (%)",
                                title="Quality against evaluation cost")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("evaluation time (s, log scale)", "rsum (%)")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    names = [matplotlib.text.Text.get_window_extent(t, renderer) for t in ax.texts]  # no leader
    assert sorted(t.get_text() for t in ax.texts) == sorted(df["model"])
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not a.overlaps(b), "two names overlap"
    points = ax.transData.transform(df[["eval_time_s", "rsum"]].to_numpy())
    for a in names:
        assert not any(a.x0 < x < a.x1 and a.y0 < y < a.y1 for x, y in points), \
            "a name covers a marker's centre"
    colours = {matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections}
    assert "#f0e442" not in colours

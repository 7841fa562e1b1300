"""The chapter-run registry: each named run is the run folder its chapter's own call trains, so a
later chapter reloads it instead of retraining under a drifted hash."""

import json
import re
from pathlib import Path

import pytest

from xmrlib.chapter_runs import RUNS, chapter_run, chapter_run_dir
from xmrlib.config import chapter_config
from xmrlib.data import first_images, load_precomp
from xmrlib.models.vsepp import VSE0_FLAGS, VSEPP_FLAGS
from xmrlib.runs import chapter_model_config, chapter_train_config, planned_run
from xmrlib.train import TrainConfig

PROFILES = ("smoke", "default", "full")


@pytest.fixture(scope="module")
def splits(shapes_root):
    return load_precomp(shapes_root, "train"), load_precomp(shapes_root, "dev")


@pytest.fixture
def subsets(monkeypatch):
    """Chapters 04 and 05 train on subsets smaller than the test's tiny splits (60 training and
    20 dev images), so that the subsets are real cuts, different per chapter."""
    from xmrlib import config

    for profile in PROFILES:
        for chapter, (n_train, n_dev) in {"04": (40, None), "05": (30, 12)}.items():
            deltas = config.PROFILE_DELTAS[profile]
            monkeypatch.setitem(deltas, chapter, {**deltas.get(chapter, {}),
                                                  "n_train_images": n_train,
                                                  "n_dev_images": n_dev})


def as_chapter_does(chapter, model_name, train, dev, profile, seed, train_overrides=None,
                    **model_overrides):
    """The run folder of ``fit_chapter_model`` with these arguments, as the chapters call it."""
    cfg = chapter_train_config(chapter, profile, seed=seed, **(train_overrides or {}))
    config = chapter_model_config(chapter, profile, train, **model_overrides)
    return planned_run(model_name, config, train, dev, cfg)[1]


def chapter_calls(profile, train, dev, seed=0):
    """The run folder of each registered run as its chapter's notebook trains it today (the
    arguments copied from notebooks 02-05, evaluated on the profile's values)."""
    c = {n: chapter_config(n, profile) for n in ("02", "03", "04", "05")}
    dual = {n: {k: c[n][k] for k in ("embed_size", "word_dim", "margin")}
            for n in ("02", "03", "04")}
    targs = {n: {k: c[n][k] for k in ("epochs", "batch_size", "lr", "lr_update")} for n in c}
    c4, c5 = c["04"], c["05"]
    tr4, dv4 = first_images(train, c4["n_train_images"]), first_images(dev, c4["n_dev_images"])
    tr5, dv5 = first_images(train, c5["n_train_images"]), first_images(dev, c5["n_dev_images"])
    lam = {"t2i": c4["lambda_softmax_t2i"], "i2t": c4["lambda_softmax_i2t"]}
    lse = {"t2i": c4["lambda_lse_t2i"], "i2t": c4["lambda_lse_i2t"]}

    def scan(name, a, g="LSE", warmup=c4["warmup"]):  # chapter 04's fit_variant
        return as_chapter_does("04", name, tr4, dv4, profile, seed, targs["04"], **dual["04"],
                               attention=a, agg=g, lambda_softmax=lam[a], lambda_lse=lse[a],
                               warmup=warmup)

    mmca_cfg = TrainConfig(epochs=c5["epochs"], lr=c5["lr"], lr_update=c5["lr_update"],
                           batch_size=c5["batch_size"], seed=seed, eval_protocol="1k",
                           eval_batch_size=c5["eval_batch_size"], eval_every=c5["eval_every"])
    mmca = dict(img_dim=int(train.images.shape[-1]), embed_size=c5["embed_size"],
                heads=c5["heads"], alpha=c5["alpha"], max_violation=c5["max_violation"])
    calls = {
        ("02", "Kiros VSE"): as_chapter_does("02", "vse", train, dev, profile, seed, targs["02"],
                                             **dual["02"]),
        ("03", "VSE0"): as_chapter_does("03", "vsepp", train, dev, profile, seed, targs["03"],
                                        **dual["03"], **VSE0_FLAGS),
        ("03", "VSE++"): as_chapter_does("03", "vsepp", train, dev, profile, seed, targs["03"],
                                         **dual["03"], **VSEPP_FLAGS),
        ("03", "VSE++ with warm-up"): as_chapter_does(
            "03", "vsepp", train, dev, profile, seed, targs["03"], warmup=c["03"]["warmup"],
            **dual["03"], **VSEPP_FLAGS),
        ("04", "SCAN i2t LSE, no warm-up"): scan("scan", "i2t", "LSE", warmup=0),
        ("05", "MMCA"): planned_run("mmca", mmca, tr5, dv5, mmca_cfg)[1],
        ("05", "MMCA cross only"): planned_run("mmca", {**mmca, "terms": "cross"}, tr5, dv5,
                                               mmca_cfg)[1],
        ("05", "MMCA without region self-attention"): planned_run(
            "mmca", {**mmca, "region_self_attention": False}, tr5, dv5, mmca_cfg)[1],
        ("05", "VSE++"): as_chapter_does("03", "vsepp", tr5, dv5, profile, seed, **VSEPP_FLAGS),
        ("05", "SCAN"): as_chapter_does("04", "scan", tr5, dv5, profile, seed,
                                        warmup=c4["warmup"]),
    }
    calls.update({("04", f"SCAN {a} {g}"): scan("scan", a, g) for a in ("t2i", "i2t")
                  for g in ("LSE", "AVG")})
    calls.update({("04", f"Sum-Max {a}"): scan("summax", a) for a in ("t2i", "i2t")})
    return calls


@pytest.mark.parametrize("profile", PROFILES)
def test_every_run_is_the_folder_its_chapter_trains(splits, subsets, profile):
    """Registry and chapter agree on the run folder (the hash of model config, training config
    and data), so switching a chapter to the registry keeps its existing runs."""
    train, dev = splits
    calls = chapter_calls(profile, train, dev, seed=3)
    assert set(calls) == set(RUNS)
    for (chapter, name), want in calls.items():
        got = chapter_run_dir(chapter, name, train, dev, profile, seed=3)
        assert got == want, f"{chapter} {name!r} ({profile})"


def test_every_run_has_its_own_folder(splits, subsets):
    """No two names share a run: chapter 05's baselines (chapter 03's VSE++ and chapter 04's
    SCAN on chapter 05's subsets) are runs of their own, as they are in chapter 05 today."""
    train, dev = splits
    dirs = {chapter_run_dir(c, n, train, dev, "default") for c, n in RUNS}
    assert len(dirs) == len(RUNS)


def test_a_changed_parameter_is_another_run(splits):
    train, dev = splits
    base = chapter_run_dir("03", "VSE++", train, dev, "smoke")
    assert chapter_run_dir("03", "VSE++", train, dev, "smoke", epochs=None) == base
    assert chapter_run_dir("03", "VSE++", train, dev, "smoke", epochs=3) != base
    assert chapter_run_dir("03", "VSE++", train, dev, "smoke", margin=0.1) != base
    assert chapter_run_dir("03", "VSE++", train, dev, "smoke", seed=1) != base
    sub = chapter_run_dir("05", "VSE++", train, dev, "smoke", n_train_images=30)
    assert chapter_run_dir("05", "VSE++", train, dev, "smoke", n_train_images=20) != sub
    assert sub == as_chapter_does("03", "vsepp", first_images(train, 30), dev, "smoke", 0,
                                  **VSEPP_FLAGS)


def test_unknown_runs_and_parameters_are_named(splits):
    train, dev = splits
    with pytest.raises(ValueError, match=r"no run 'VSE\+\+' in chapter '02'.*'Kiros VSE'"):
        chapter_run_dir("02", "VSE++", train, dev, "smoke")
    with pytest.raises(ValueError, match="unknown parameter 'heads'"):
        chapter_run_dir("03", "VSE++", train, dev, "smoke", heads=4)
    with pytest.raises(ValueError, match="takes no n_train_images"):
        chapter_run_dir("03", "VSE++", train, dev, "smoke", n_train_images=10)


@pytest.mark.slow
def test_chapter_run_trains_once_then_reloads(splits, tmp_path, monkeypatch):
    train, dev = splits
    first = chapter_run("03", "VSE++", train, dev, "smoke", seed=0, device="cpu")
    assert first.run_dir == chapter_run_dir("03", "VSE++", train, dev, "smoke", seed=0)
    assert (first.run_dir / "done.json").exists()
    done = (first.run_dir / "done.json").stat().st_mtime_ns
    again = chapter_run("03", "VSE++", train, dev, "smoke", seed=0, device="cpu")
    assert again.run_dir == first.run_dir and again.best_epoch == first.best_epoch
    assert (first.run_dir / "done.json").stat().st_mtime_ns == done  # reloaded, not retrained
    assert again.model.config == first.model.config


def test_notebooks_name_registered_runs():
    """Every ``chapter_run("NN", "name"`` in a chapter names a run of the registry."""
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    for path in sorted(notebooks.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for chapter, name in re.findall(r"chapter_run(?:_dir)?\(\s*\"(\d\d)\",\s*\"([^\"]+)\"",
                                        code):
            assert (chapter, name) in RUNS, f"{path.name}: chapter_run({chapter!r}, {name!r})"

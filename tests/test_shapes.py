import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from xmrlib.data import caption_is_true, caption_truth, load_precomp, make_shapes
from xmrlib.data import shapes_grammar as grammar
from xmrlib.vocab import tokenize
from xmrlib.data.shapes import (BACKGROUNDS, COLOURS, SHAPES, SIZES, probe_data, split_captions,
                                split_scenes, split_statistics)


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_byte_identical(tmp_path, shapes_root):
    a = make_shapes(tmp_path / "a", 60, 20, 20, seed=0)
    b = make_shapes(tmp_path / "b", 60, 20, 20, seed=1)
    da, db, d0 = _digest(a), _digest(b), _digest(shapes_root)
    assert da == d0
    assert da["train_ims.npy"] != db["train_ims.npy"]
    assert da["train_caps.txt"] != db["train_caps.txt"]


def test_split_regeneration_matches_files(shapes_root):
    """split_scenes/split_captions (used by the statistics) give exactly the written split."""
    for split, n in (("train", 60), ("test", 20)):
        scenes, groups = split_scenes(n, 0, split)
        assert scenes == json.loads((shapes_root / f"{split}_scenes.json").read_text("utf-8"))
        assert np.array_equal(groups, np.load(shapes_root / f"{split}_groups.npy"))
        caps = (shapes_root / f"{split}_caps.txt").read_text("utf-8").splitlines()
        assert split_captions(scenes, 0, split) == caps


def test_vocabularies_agree():
    assert tuple(COLOURS) == grammar.COLOUR_NAMES
    assert tuple(BACKGROUNDS) == grammar.BACKGROUND_NAMES
    assert SHAPES == grammar.SHAPE_NAMES and SIZES == grammar.SIZE_NAMES


def test_round_trip_and_shapes(shapes_root):
    d = load_precomp(shapes_root, "train")
    assert d.images.shape[0] == 60 and d.images.dtype == np.float32 and d.images.ndim == 3
    assert len(d.captions) == 300 and len(d.scenes) == 60 and len(d.semantics) == 60
    assert d.boxes.shape == (60, d.images.shape[1], 4)
    for i in range(60):
        k = len(d.scenes[i]["objects"])
        assert 2 <= k <= 4 and k + 1 <= d.n_regions[i] <= k + 2
        assert np.all(d.images[i, d.n_regions[i]:] == 0)
        assert np.all(np.abs(d.images[i, : d.n_regions[i]]).sum(-1) > 0)
        assert np.allclose(d.boxes[i, :k], [o["box"] for o in d.scenes[i]["objects"]], atol=1e-6)
        assert d.image_paths[i].is_file()
    manifest = json.loads((shapes_root / "manifest.json").read_text())
    assert manifest["sizes"] == {"train": 60, "dev": 20, "test": 20}
    assert manifest["palette"] == {k: list(v) for k, v in COLOURS.items()}


def test_groups_differ_only_in_bindings(shapes_root):
    d = load_precomp(shapes_root, "train")
    sizes = Counter(d.groups.tolist())
    assert set(sizes.values()) <= {2, 3}
    for g in sizes:
        members = [d.scenes[i] for i in np.flatnonzero(d.groups == g)]
        first = members[0]["objects"]
        for m, sc in enumerate(members):
            objs = sc["objects"]
            assert sorted(o["colour"] for o in objs) == sorted(o["colour"] for o in first)
            assert [(o["shape"], o["size"], o["row"], o["col"]) for o in objs] == \
                [(o["shape"], o["size"], o["row"], o["col"]) for o in first]
            assert sc["background"] == members[0]["background"]
            if m:                                   # every object changes colour in a twin
                assert all(o["colour"] != p["colour"] for o, p in zip(objs, first))


def test_captions_true_of_own_scene_and_false_of_every_twin(shapes_root):
    """Every caption names its objects by colour and shape, so no caption fits a twin: the
    binding ceiling is 1 by construction."""
    d = load_precomp(shapes_root, "train")
    for i, sc in enumerate(d.scenes):
        caps = d.captions[5 * i: 5 * i + 5]
        assert len(set(caps)) == 5
        twins = [j for j in np.flatnonzero(d.groups == d.groups[i]) if j != i]
        for c in caps:
            assert caption_is_true(c, sc), (c, sc)
            assert not any(caption_is_true(c, d.scenes[j]) for j in twins), c
            assert grammar.MIN_WORDS <= len(tokenize(c)) <= grammar.MAX_WORDS


def test_checker_hand_cases():
    scene = {"background": "grey", "objects": [
        {"colour": "red", "shape": "circle", "size": "small", "row": 0, "col": 0},
        {"colour": "blue", "shape": "square", "size": "large", "row": 0, "col": 2},
        {"colour": "green", "shape": "star", "size": "medium", "row": 2, "col": 1}]}
    true = ["a red circle to the left of a blue square",
            "to the right of a red disc sits a big blue box",            # clause-initial relation
            "a small red circle left of a large blue square on a grey background",
            "three shapes with a blue square above a green star",
            "the circle in the top left corner is red and the star is green",
            "a picture of a green star at the bottom lower than a red circle",
            "a red circle left of a blue square which is above a green star",
            "on a gray backdrop a medium green star, a red circle and a blue square",
            "a blue square on the right, a red circle, three objects in total"]
    false = ["a blue circle to the left of a red square",                # bindings swapped
             "a red circle to the right of a blue square",               # relation reversed
             "to the left of a red circle sits a blue square",           # the inverted form
             "a large red circle left of a large blue square",           # size
             "two shapes with a blue square above a green star",         # count
             "a red circle left of a blue square on a black background",  # background
             "the circle at the bottom is red and the star is green",    # position
             "a red circle left of a blue square which is below a green star",
             "a red circle and a yellow triangle"]                       # object absent
    for c in true:
        assert caption_is_true(c, scene), c
    for c in false:
        assert not caption_is_true(c, scene), c


@pytest.mark.parametrize("caption, why", [
    ("a dog on a sofa", "unknown word"),
    ("a circle left of a red square", "has no colour"),
    ("a red left of a blue square", "without a shape"),
    ("at the top a red circle", "follows no object"),
    ("a red circle left of", "relation without"),
    ("three shapes above a red circle and a blue square", "relation without"),
    ("on a grey background", "names no object"),
])
def test_parse_rejects_outside_the_grammar(caption, why):
    with pytest.raises(ValueError, match=why):
        grammar.parse(caption)


def test_semantics_sorted_and_parseable(shapes_root):
    lines = (shapes_root / "train_semantics.txt").read_text().splitlines()
    d = load_precomp(shapes_root, "train")
    assert len(lines) == 60
    hits = total = 0
    for line, sem, sc in zip(lines, d.semantics, d.scenes):
        confs = [float(p.rsplit(":", 1)[1]) for p in line.split("|")] if line else []
        assert confs == sorted(confs, reverse=True) == [c for _, c in sem]
        truth = {f"{o['colour']} {o['shape']}" for o in sc["objects"]}
        hits += sum(p in truth for p, _ in sem)
        total += len(truth)
    assert 0.5 < hits / total < 1.0          # noisy, but mostly right


def test_caption_truth_equals_per_pair_checker(shapes_root):
    scenes = json.loads((shapes_root / "test_scenes.json").read_text(encoding="utf-8"))
    caps = (shapes_root / "test_caps.txt").read_text(encoding="utf-8").splitlines()
    truth = caption_truth(scenes, caps)
    assert truth.shape == (len(scenes), len(caps))
    for i, sc in enumerate(scenes):
        for j, c in enumerate(caps):
            assert truth[i, j] == caption_is_true(c, sc)
    assert truth[np.arange(len(caps)) // 5, np.arange(len(caps))].all()


def test_default_split_meets_the_specificity_targets():
    """Issue 17's targets on the default split (5000 train / 1000 test, seed 0): a caption is
    true of at most 2 test images on average, the truth oracle's t2i R@1 is at least 80, every
    binding twin is told apart by every caption, captions have 8-16 words and the training
    captions use a vocabulary of a few hundred words."""
    s = split_statistics(n_test=1000, n_train=5000, seed=0)
    assert s["images_per_caption"] <= 2.0
    assert s["oracle_t2i_r1"] >= 80.0
    assert s["binding_ceiling"] == 1.0
    assert s["caption_words_min"] >= 8 and s["caption_words_max"] <= 16
    assert 10.0 <= s["caption_words_mean"] <= 13.0
    assert 200 <= s["vocabulary"] <= 500
    assert s["function_word_share"] >= 20.0


def test_probe_data_layout(shapes_root):
    d = load_precomp(shapes_root, "test")
    n_obj = sum(len(sc["objects"]) for sc in d.scenes)
    x, y = probe_data(d.images, d.n_regions, d.scenes, "colour")
    assert x.shape == (n_obj, d.images.shape[2]) and set(y) <= set(COLOURS)
    assert np.array_equal(x[0], d.images[0, 0])
    x, y = probe_data(d.images, d.n_regions, d.scenes, "relation")
    assert x.shape == (sum(len(s["objects"]) * (len(s["objects"]) - 1) for s in d.scenes),
                       2 * d.images.shape[2])
    a, b = d.scenes[0]["objects"][:2]                # the first pair: objects 0 and 1
    assert np.array_equal(x[0], np.concatenate([d.images[0, 0], d.images[0, 1]]))
    assert y[0] == f"{np.sign(a['col'] - b['col'])},{np.sign(a['row'] - b['row'])}"
    x, y = probe_data(d.images, d.n_regions, d.scenes, "count")
    assert np.allclose(x[0], d.images[0, : d.n_regions[0]].sum(0))
    assert y.tolist() == [len(s["objects"]) for s in d.scenes]
    with pytest.raises(ValueError, match="unknown fact type"):
        probe_data(d.images, d.n_regions, d.scenes, "texture")

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from xmrlib.data import caption_is_true, caption_truth, load_precomp, make_shapes
from xmrlib.data.shapes import COLOURS


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


def test_round_trip_and_shapes(shapes_root):
    d = load_precomp(shapes_root, "train")
    assert d.images.shape[0] == 60 and d.images.dtype == np.float32 and d.images.ndim == 3
    assert len(d.captions) == 300 and len(d.scenes) == 60 and len(d.semantics) == 60
    assert d.boxes.shape == (60, d.images.shape[1], 4)
    for i in range(60):
        k = len(d.scenes[i]["objects"])
        assert k + 1 <= d.n_regions[i] <= k + 2
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
        keys = set()
        for sc in members:
            objs = sc["objects"]
            assert sorted(o["colour"] for o in objs) == sorted(o["colour"] for o in members[0]["objects"])
            assert [(o["shape"], o["size"], o["row"], o["col"]) for o in objs] == \
                [(o["shape"], o["size"], o["row"], o["col"]) for o in members[0]["objects"]]
            assert sc["background"] == members[0]["background"]
            keys.add(tuple((o["colour"], o["shape"]) for o in objs))
        assert len(keys) == len(members)      # bindings really differ


def test_captions_true_of_own_scene_and_some_false_of_twin(shapes_root):
    d = load_precomp(shapes_root, "train")
    n_false_twin = 0
    for i, sc in enumerate(d.scenes):
        caps = d.captions[5 * i: 5 * i + 5]
        assert len(set(caps)) == 5
        twins = [j for j in np.flatnonzero(d.groups == d.groups[i]) if j != i]
        for c in caps:
            assert caption_is_true(c, sc), (c, sc)
        wrong = [c for c in caps if not all(caption_is_true(c, d.scenes[j]) for j in twins)]
        n_false_twin += len(wrong)
        assert wrong, f"image {i}: no caption separates it from its twins"
    assert n_false_twin >= 60


def test_checker_hand_cases():
    scene = {"background": "grey", "objects": [
        {"colour": "red", "shape": "circle", "size": "small", "row": 0, "col": 0},
        {"colour": "blue", "shape": "square", "size": "large", "row": 0, "col": 2}]}
    assert caption_is_true("a red circle left of a blue square", scene)
    assert not caption_is_true("a blue circle left of a red square", scene)
    assert not caption_is_true("a red circle right of a blue square", scene)
    assert caption_is_true("a small red circle left of a large blue square", scene)
    assert not caption_is_true("a large red circle left of a large blue square", scene)
    assert caption_is_true("two shapes on a grey background", scene)
    assert not caption_is_true("three shapes on a grey background", scene)
    assert caption_is_true("the square is blue", scene)
    assert not caption_is_true("the square is red", scene)
    assert caption_is_true("a blue square and a red circle", scene)
    with pytest.raises(ValueError, match="grammar"):
        caption_is_true("a dog on a sofa", scene)


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
    assert truth.sum() > len(caps)                    # ambiguity: some captions fit other scenes

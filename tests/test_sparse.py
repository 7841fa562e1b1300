"""The A3VSE sparse-corpus sampler, its loader, semantics and the s_g baseline."""

import numpy as np
import pytest
import torch

from xmrlib.data.precomp import PrecompData
from xmrlib.data.sparse import (SparseLoader, global_tags, regional_sequence, sparse_split,
                                vocabulary_iou)
from xmrlib.sparse_runs import sg_baseline_similarity
from xmrlib.vocab import Vocabulary

COLOURS = ["red", "green", "blue"]
SHAPES = ["circle", "square", "triangle"]


def make_data(n: int = 20, with_semantics: bool = True, regions: int = 3, dim: int = 4):
    """n images, 5 captions each ("image i caption j" words), semantics and scenes."""
    rng = np.random.default_rng(0)
    captions, scenes, semantics = [], [], []
    for i in range(n):
        c, s = COLOURS[i % 3], SHAPES[(i // 3) % 3]
        captions += [f"a {c} {s} number {j}" for j in range(5)]
        scenes.append({"objects": [{"colour": c, "shape": s}, {"colour": "red", "shape": "circle"}],
                       "background": "gray"})
        semantics.append([(f"{c} {s}", 0.9), ("red circle", 0.6), ("blue square", 0.2)])
    return PrecompData(root="/data/toy", split="train",
                       images=rng.normal(size=(n, regions, dim)).astype(np.float32),
                       captions=captions, captions_per_image=5,
                       n_regions=np.full(n, regions, dtype=np.int64), boxes=None, groups=None,
                       scenes=scenes, semantics=semantics if with_semantics else None,
                       image_paths=None, manifest={"seed": 0})


def test_counts_partition_and_caption_ownership():
    data = make_data()
    split = sparse_split(data, 0.5, 2, seed=3)
    assert len(split.annotated) == 10 and len(split.unannotated) == 10
    assert sorted(np.concatenate([split.annotated, split.unannotated])) == list(range(20))
    assert split.caption_ids.shape == (10, 2)
    for img, caps in zip(split.annotated, split.caption_ids):
        assert len(set(caps)) == 2 and all(c // 5 == img for c in caps)
    c = split.counts()
    got = (c["n_pairs"], c["pct_ann"], c["sent"], c["n_unannotated_images"])
    assert got == (20, 20.0, "2/5", 10)
    assert split.label == "50% img, 2/5 sent"


def test_paper_table1_counts():
    """Flickr30K's 29,000 training images: the # pairs and % annotations of Table 1 (the
    paper prints 23,200 for 50% img, 2/5 sent, where 14,500 x 2 = 29,000)."""
    n = 29000
    data = PrecompData(root="/f30k", split="train", images=np.zeros((n, 1, 1), np.float32),
                       captions=[""] * (5 * n), captions_per_image=5,
                       n_regions=np.ones(n, np.int64), boxes=None, groups=None, scenes=None,
                       semantics=None, image_paths=None, manifest={})
    expected = {(0.1, 1): (2900, 2), (0.1, 2): (5800, 4), (0.1, 5): (14500, 10),
                (0.2, 1): (5800, 4), (0.2, 2): (11600, 8), (0.2, 5): (29000, 20),
                (0.5, 1): (14500, 10), (0.5, 2): (29000, 20), (0.5, 5): (72500, 50)}
    for (f, k), (pairs, pct) in expected.items():
        c = sparse_split(data, f, k, require_semantics=False).counts()
        assert (c["n_pairs"], c["pct_ann"]) == (pairs, pct)


def test_determinism_and_nesting():
    data = make_data(40)
    a, b = sparse_split(data, 0.2, 2, seed=1), sparse_split(data, 0.2, 2, seed=1)
    assert np.array_equal(a.annotated, b.annotated) and np.array_equal(a.caption_ids, b.caption_ids)
    assert not np.array_equal(a.annotated, sparse_split(data, 0.2, 2, seed=2).annotated)
    big = sparse_split(data, 0.5, 5, seed=1)
    assert set(a.annotated) <= set(big.annotated)  # shuffle once, then trim
    one = sparse_split(data, 0.2, 1, seed=1)
    for row_one, row_two in zip(one.caption_ids, a.caption_ids):
        assert set(row_one) <= set(row_two)


def test_annotated_view_and_errors():
    data = make_data()
    split = sparse_split(data, 0.25, 1, seed=0)
    view = split.annotated_data()
    assert np.array_equal(view.images, data.images[split.annotated])
    assert view.captions == [data.captions[c] for c in split.caption_ids[:, 0]]
    assert view.captions_per_image == 1 and len(view.captions) == len(view.images) == 5
    assert "sparse" in view.split and view.manifest["sparse"]["seed"] == 0
    with pytest.raises(ValueError, match="train_semantics.txt.*confidence"):
        sparse_split(make_data(with_semantics=False), 0.5, 1)
    with pytest.raises(ValueError, match="captions_per_image"):
        sparse_split(data, 0.5, 6)


def test_semantic_sequences_global_tags_and_iou():
    sem = [("blue car", 0.93), ("white building", 0.88), ("black tire", 0.2)]
    assert regional_sequence(sem) == "blue car white building black tire"
    assert regional_sequence(sem, min_confidence=0.5) == "blue car white building"
    objects = [("red", "square"), ("blue", "circle"), ("red", "circle")]
    scene = {"objects": [{"colour": c, "shape": s} for c, s in objects], "background": "gray"}
    assert global_tags(scene) == ["circle", "square", "blue", "red", "gray-background"]
    # words {a, red, dog} vs {red, cat}: intersection 1, union 4
    assert vocabulary_iou(["a red dog"], ["red cat"]) == pytest.approx(25.0)
    split = sparse_split(make_data(), 0.5, 1, seed=0)
    assert split.semantic_sequences("global")[0].endswith("gray-background")


def test_loader_covers_every_pair_and_matches_semantics():
    data = make_data(30)
    split = sparse_split(data, 0.4, 2, seed=0)
    vocab = Vocabulary.build(split.vocabulary_texts(), threshold=1)
    loader = SparseLoader(split, vocab, batch_size=5, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 5  # 24 pairs in batches of 5
    seen = torch.cat([b["caption_idx"] for b in batches]).tolist()
    assert sorted(seen) == sorted(split.caption_ids.reshape(-1).tolist())
    unannotated = set(split.unannotated.tolist())
    for b in batches:
        assert torch.equal(b["image_idx"], b["caption_idx"] // 5)
        assert torch.equal(b["images"], torch.from_numpy(data.images[b["image_idx"].numpy()]))
        u = b["u_image_idx"].tolist()
        assert set(u) <= unannotated and len(u) == 5
        tokens, lengths = vocab([regional_sequence(data.semantics[i]) for i in u])
        assert torch.equal(b["s_tokens"], tokens) and torch.equal(b["s_lengths"], lengths)
    again = list(SparseLoader(split, vocab, batch_size=5, seed=0))
    assert all(torch.equal(x["caption_idx"], y["caption_idx"]) for x, y in zip(batches, again))
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))["caption_idx"], batches[0]["caption_idx"])
    fixed = SparseLoader(split, vocab, batch_size=5, seed=0, steps_per_epoch=7)
    assert len(fixed) == 7 and all(len(b["caption_idx"]) == 5 for b in fixed)


def test_loader_without_semantics_gives_plain_pairs():
    data = make_data(10)
    split = sparse_split(data, 1.0, 1, seed=0)  # every image annotated: no un-annotated part
    vocab = Vocabulary.build(split.annotated_captions(), threshold=1)
    batches = list(SparseLoader(split, vocab, batch_size=4, semantics=None))
    assert [len(b["caption_idx"]) for b in batches] == [4, 4, 2]
    assert all(not any(k.startswith(("u_", "s_")) for k in b) for b in batches)
    with pytest.raises(ValueError, match="no un-annotated"):
        SparseLoader(split, vocab, batch_size=4)


def test_sg_baseline_scores_hand_case():
    scenes = [{"objects": [{"colour": "red", "shape": "circle"}], "background": "gray"},
              {"objects": [{"colour": "blue", "shape": "square"}], "background": "white"}]
    caps = ["a red circle", "a blue square on white background"]
    sims = sg_baseline_similarity(scenes, caps, seed=0)
    # image 0 tags {circle, red, gray-background}: caption 0 matches 2, caption 1 none
    # image 1 tags {square, blue, white-background}: caption 1 matches all 3
    assert np.allclose(np.round(sims), [[2, 0], [0, 3]])
    assert (sims - np.round(sims)).max() < 1e-3

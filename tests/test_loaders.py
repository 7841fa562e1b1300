import numpy as np
import pytest
import torch

from xmrlib.data import caption_batches, image_batches, load_precomp, make_loader
from xmrlib.vocab import Vocabulary


@pytest.fixture(scope="module")
def train(shapes_root):
    return load_precomp(shapes_root, "train")


def test_batches_pad_lengths_and_images(train):
    vocab = Vocabulary.build(train.captions)
    loader = make_loader(train, vocab, batch_size=16, shuffle=True, seed=3)
    seen = []
    for b in loader:
        assert set(b) == {"images", "n_regions", "tokens", "lengths", "image_idx", "caption_idx"}
        assert b["tokens"].shape[1] == int(b["lengths"].max())
        for k in range(len(b["lengths"])):
            j = int(b["caption_idx"][k])
            assert int(b["image_idx"][k]) == j // 5
            ids = vocab.encode(train.captions[j])
            assert b["lengths"][k] == len(ids)
            assert b["tokens"][k].tolist() == ids + [0] * (b["tokens"].shape[1] - len(ids))
            assert np.array_equal(b["images"][k].numpy(), train.images[j // 5])
            assert b["n_regions"][k] == train.n_regions[j // 5]
        seen += b["caption_idx"].tolist()
    assert sorted(seen) == list(range(300)) and len(loader) == 19


def test_order_from_seed_and_epoch(train):
    vocab = Vocabulary.build(train.captions)
    order = lambda l: [i for b in l for i in b["caption_idx"].tolist()]  # noqa: E731
    a, b = make_loader(train, vocab, 32, seed=0), make_loader(train, vocab, 32, seed=0)
    assert order(a) == order(b)
    assert order(a) != order(make_loader(train, vocab, 32, seed=1))
    first = order(a)
    a.set_epoch(1)
    assert order(a) != first and sorted(order(a)) == sorted(first)
    assert order(make_loader(train, vocab, 32, shuffle=False)) == list(range(300))
    assert len(make_loader(train, vocab, 32, drop_last=True)) == 9


def test_distributed_shards_partition_global_batch(train):
    vocab = Vocabulary.build(train.captions)
    single = make_loader(train, vocab, 24, seed=5, drop_last=True)
    ranks = [make_loader(train, vocab, 8, seed=5, rank=r, world_size=3) for r in range(3)]
    for ld in [single, *ranks]:
        ld.set_epoch(2)
    glob = [b["caption_idx"].tolist() for b in single]
    shards = [[b["caption_idx"].tolist() for b in ld] for ld in ranks]
    assert all(len(s) == len(glob) == 12 for s in shards)
    for k, g in enumerate(glob):
        assert shards[0][k] + shards[1][k] + shards[2][k] == g
    with pytest.raises(ValueError, match="rank"):
        make_loader(train, vocab, 8, rank=3, world_size=3)


def test_eval_iterators_ordered(train):
    vocab = Vocabulary.build(train.captions)
    ims = torch.cat([x for x, _ in image_batches(train, 7)])
    assert np.array_equal(ims.numpy(), np.asarray(train.images))
    nr = torch.cat([n for _, n in image_batches(train, 7)])
    assert nr.tolist() == train.n_regions.tolist()
    lens = torch.cat([l for _, l in caption_batches(train, vocab, 64)])
    assert lens.tolist() == [len(vocab.encode(c)) for c in train.captions]

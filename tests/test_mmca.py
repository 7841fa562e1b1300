"""Tests of xmrlib.models.mmca and xmrlib.text_features against plain loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmrlib import text_features as tf
from xmrlib.models.mmca import (MMCA, NgramCNN, TransformerUnit, stable_softmax,
                                 two_stage_similarity)

CAPTIONS = ["a red circle left of a blue square", "a big green triangle",
            "two shapes on grey", "a small blue square above a red circle on a white background"]


def fake_store(tokens: torch.Tensor, lengths: torch.Tensor, seed: int = 0) -> tf.TokenFeatureStore:
    """A store with random 384-d features for the given token rows (no MiniLM needed)."""
    g = torch.Generator().manual_seed(seed)
    ids, feats, offsets = [], [], [0]
    for row, n in zip(tokens, lengths.tolist()):
        ids.append(row[:n].numpy().astype(np.int32))
        feats.append(torch.randn(n, tf.MINILM_DIM, generator=g).numpy())
        offsets.append(offsets[-1] + n)
    return tf.TokenFeatureStore(np.concatenate(ids), np.array(offsets), np.concatenate(feats))


@pytest.fixture(autouse=True)
def no_registered_stores():
    tf.clear_stores()
    yield
    tf.clear_stores()


def small_model(**kw) -> MMCA:
    torch.manual_seed(0)
    cfg = dict(img_dim=12, embed_size=16, heads=4, dropout=0.0)
    cfg.update(kw)
    return MMCA(**cfg).eval()


def random_tokens(n: int, lengths: list[int], vocab: int = 2000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    tokens = torch.zeros(n, width, dtype=torch.long)
    for i, length in enumerate(lengths):
        tokens[i, :length] = torch.randint(1000, vocab, (length,), generator=g)
    return tokens, torch.tensor(lengths)


# ----------------------------------------------------------------------------- modules vs loops

def reference_unit(unit: TransformerUnit, x: torch.Tensor) -> torch.Tensor:
    """Post-norm Transformer unit of one unpadded sequence x (T, d), written with loops."""
    t, d = x.shape
    h = unit.heads
    dk = d // h
    w, b = unit.qkv.weight, unit.qkv.bias
    q, k, v = (x @ w[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d] for i in range(3))
    heads = []
    for j in range(h):
        sl = slice(j * dk, (j + 1) * dk)
        rows = []
        for a in range(t):
            logits = torch.stack([q[a, sl] @ k[c, sl] / math.sqrt(dk) for c in range(t)])
            weights = torch.softmax(logits, 0)
            rows.append(sum(weights[c] * v[c, sl] for c in range(t)))
        heads.append(torch.stack(rows))
    attn = unit.out(torch.cat(heads, dim=1))
    y = unit.norm1(x + attn)
    return unit.norm2(y + unit.ffn(y))


def test_transformer_unit_matches_loops_and_ignores_padding():
    torch.manual_seed(1)
    unit = TransformerUnit(dim=8, heads=2, ffn_dim=8, dropout=0.0).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = unit(x, mask)
        assert torch.allclose(out[0], reference_unit(unit, x[0]), atol=1e-5)
        assert torch.allclose(out[1, :3], reference_unit(unit, x[1, :3]), atol=1e-5)
        assert torch.all(out[1, 3:] == 0)
        x2 = x.clone()
        x2[1, 3:] = 100.0  # garbage in padded slots changes nothing
        assert torch.allclose(unit(x2, mask), out, atol=1e-6)
        weights = unit.attention_weights(x, mask)  # (n, h, T, T)
        assert torch.all(weights[1, :, :, 3:] == 0)
        assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 5), atol=1e-6)


def test_stable_softmax_gradient_is_the_softmax_gradient():
    """The written-out backward of ``stable_softmax`` against finite differences (gradcheck, in
    float64) and against autograd through ``exp(x) / sum(exp(x))`` written plainly, with masked
    (-inf) keys; its values equal the no-autograd path bit for bit."""
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(3, 1, 1, 6) > 0.3
    keep[..., 0] = True

    def masked(z):
        return z.masked_fill(~keep, float("-inf"))

    assert torch.autograd.gradcheck(lambda z: stable_softmax(masked(z)), (x,))
    g = torch.randn(3, 2, 4, 6, dtype=torch.float64)
    ours = torch.autograd.grad((stable_softmax(masked(x)) * g).sum(), x)[0]
    e = masked(x).exp()
    plain = torch.autograd.grad((e / e.sum(-1, keepdim=True) * g).sum(), x)[0]
    assert torch.allclose(ours, plain, atol=1e-12)
    x32 = x.detach().float().requires_grad_()
    with torch.no_grad():
        frozen = stable_softmax(x32)
    assert torch.equal(stable_softmax(x32), frozen)


def test_ngram_cnn_matches_eq6_eq7_loops():
    torch.manual_seed(2)
    cnn = NgramCNN(in_dim=5, n_filters=3, out_dim=4)
    words = torch.randn(2, 6, 5)
    lengths = torch.tensor([6, 2])
    with torch.no_grad():
        out = cnn(words, lengths)
        for i, n in enumerate(lengths.tolist()):
            e = torch.cat([words[i, :n], torch.zeros(2, 5)])  # zeros past the last word
            qs = []
            for conv in cnn.convs:
                size = conv.kernel_size[0]
                w = conv.weight  # (filters, in, size)
                p = [torch.relu(sum(w[:, :, j] @ e[k + j] for j in range(size)) + conv.bias)
                     for k in range(n)]
                qs.append(torch.stack(p).max(dim=0).values)
            ref = cnn.fc(torch.cat(qs))
            ref = ref / ref.norm()
            assert torch.allclose(out[i], ref, atol=1e-5)
        padded = torch.cat([words, torch.randn(2, 3, 5)], dim=1)  # longer batch, same lengths
        assert torch.allclose(cnn(padded, lengths), out, atol=1e-6)


# ----------------------------------------------------------------------------- model

def test_encoders_shapes_and_padding_invariance():
    model = small_model()
    tokens, lengths = random_tokens(3, [7, 3, 5])
    tf.register_store(fake_store(tokens, lengths))
    images = torch.randn(2, 4, 12)
    n_regions = torch.tensor([4, 2])
    with torch.no_grad():
        img = model.encode_images(images, n_regions)
        cap = model.encode_captions(tokens, lengths)
        assert img.shape == (2, 5, 16) and cap.shape == (3, 8, 16)
        assert torch.allclose(img[:, 0].norm(dim=1), torch.ones(2))
        assert torch.allclose(cap[:, 0].norm(dim=1), torch.ones(3))
        assert torch.all(img[1, 3:] == 0) and torch.all(cap[1, 4:] == 0)
        # more padding (regions and tokens) changes no output
        images_p = torch.cat([images, torch.randn(2, 3, 12)], dim=1)
        tokens_p = torch.cat([tokens, torch.zeros(3, 4, dtype=torch.long)], dim=1)
        img_p = model.encode_images(images_p, n_regions)
        cap_p = model.encode_captions(tokens_p, lengths)
        assert torch.allclose(img_p[:, :5], img, atol=1e-6) and torch.all(img_p[:, 5:] == 0)
        assert torch.allclose(cap_p[:, :8], cap, atol=1e-6)
        sims = model.similarity(img, cap, lengths, n_regions)
        assert sims.shape == (2, 3)
        assert torch.allclose(model.similarity(img_p, cap_p, lengths, n_regions), sims, atol=1e-5)
        att = model.region_attention(images, n_regions)  # (n, R, R), head-averaged
        assert att.shape == (2, 4, 4) and torch.all(att[1, :, 2:] == 0)
        assert torch.allclose(att.sum(-1), torch.ones(2, 4), atol=1e-6)
        cross = model.cross_attention(images, n_regions, tokens[:2], lengths[:2])  # (2, r+w, r+w)
        assert cross.shape == (2, 4 + 7, 4 + 7) and torch.all(cross[1, :, 2:4] == 0)
        # a single image alone (no batch padding at all) gives the same scores
        alone = model.similarity(model.encode_images(images[1:, :2], n_regions[1:]), cap, lengths)
        assert torch.allclose(alone, sims[1:], atol=1e-5)


def test_similarity_is_the_formula():
    model = small_model(alpha=0.3)
    d = 16
    img = torch.zeros(2, 3, d)
    cap = torch.zeros(2, 4, d)
    img[0, 0, 0] = 1.0                       # i0 of image 0 = e0
    img[1, 0, 1] = 1.0                       # i0 of image 1 = e1
    cap[0, 0, 0], cap[0, 0, 1] = 0.6, 0.8    # c0 of caption 0
    cap[1, 0, 2] = 1.0                       # c0 of caption 1 = e2
    torch.manual_seed(3)
    img[:, 1:] = torch.randn(2, 2, d)
    cap[:, 1:] = torch.randn(2, 3, d)
    img_lens, cap_lens = torch.tensor([2, 1]), torch.tensor([3, 2])
    img[1, 2] = 0
    cap[1, 3] = 0
    self_term = torch.tensor([[0.6, 0.0], [0.8, 0.0]])
    with torch.no_grad():
        sims = model.similarity(img, cap, cap_lens, img_lens)
        for i in range(2):
            for j in range(2):
                i1, c1 = model.cross_embeddings(img[i:i + 1, :, :], cap[j:j + 1], img_lens[i:i + 1],
                                                cap_lens[j:j + 1])
                expected = float(self_term[i, j]) + 0.3 * float(i1[0] @ c1[0])
                assert sims[i, j].item() == pytest.approx(expected, abs=1e-5)
        assert torch.allclose(small_model(terms="self").similarity(img, cap, cap_lens, img_lens),
                              self_term)
        assert torch.allclose(small_model(alpha=0.0).similarity(img, cap, cap_lens, img_lens),
                              self_term)
        cross_only = small_model(terms="cross").similarity(img, cap, cap_lens, img_lens)
        assert torch.allclose(cross_only, (sims - self_term) / 0.3, atol=1e-5)


def test_chunked_similarity_and_two_stage():
    model = small_model()
    img = model.encode_images(torch.randn(5, 4, 12), torch.tensor([4, 1, 3, 2, 4]))
    tokens, lengths = random_tokens(7, [3, 5, 2, 6, 4, 3, 5])
    tf.register_store(fake_store(tokens, lengths))
    with torch.no_grad():
        cap = model.encode_captions(tokens, lengths)
        full = model.similarity(img, cap, lengths)
        img_lens = torch.tensor([4, 1, 3, 2, 4])
        one = lambda i, j: float(model.similarity(img[i:i + 1], cap[j:j + 1], lengths[j:j + 1],
                                                  img_lens[i:i + 1]))  # one pair at a time
        by_pair = torch.tensor([[one(i, j) for j in range(7)] for i in range(5)])
        assert torch.allclose(full, by_pair, atol=1e-6)
        for chunk in (3, 8):  # tiles of 1 x 3 and 2 x 4 pairs over length-sorted rows
            model.pair_chunk = chunk
            chunked = model.similarity(img, cap, lengths)
            assert torch.allclose(by_pair, chunked, atol=1e-6)
        i2t, t2i = two_stage_similarity(model, img, cap, lengths, None, k=100)
        exact = full.numpy()
        assert (np.argsort(-i2t, axis=1) == np.argsort(-exact, axis=1)).all()
        assert (np.argsort(-t2i, axis=0) == np.argsort(-exact, axis=0)).all()
        i2t, t2i = two_stage_similarity(model, img, cap, lengths, None, k=1)
        coarse = (img[:, 0] @ cap[:, 0].T).numpy()
        assert (i2t.argmax(1) == coarse.argmax(1)).all()  # one candidate: the coarse best
        assert (t2i.argmax(0) == coarse.argmax(0)).all()


def caption_batch(n_images: int = 3) -> dict:
    tokens, lengths = tf.wordpiece_tokenize(CAPTIONS[:n_images])
    return {"images": torch.randn(n_images, 4, 12), "n_regions": torch.tensor([4, 2, 3][:n_images]),
            "tokens": tokens, "lengths": lengths}


@pytest.mark.slow
def test_frozen_text_encoder_stays_frozen():
    model = MMCA(img_dim=12, embed_size=16, heads=4).train()
    assert model.bert is None
    assert not any(k.startswith("bert") for k in model.state_dict())
    minilm = tf.frozen_minilm()
    before = {k: v.clone() for k, v in minilm.state_dict().items()}
    batch = caption_batch()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    img = model.encode_images(batch["images"], batch["n_regions"])
    cap = model.encode_captions(batch["tokens"], batch["lengths"])
    scores = model.similarity(img, cap, batch["lengths"], batch["n_regions"])
    scores.logsumexp(dim=1).sum().backward()
    opt.step()
    assert all(not p.requires_grad and p.grad is None for p in minilm.parameters())
    assert all(torch.equal(before[k], v) for k, v in minilm.state_dict().items())
    assert model.region_fc.weight.grad is not None and model.word_proj.weight.grad is not None


def test_loss_is_hardest_negative_hinge_over_all_pairs():
    pytest.importorskip("xmrlib.losses")
    model = small_model(margin=0.2)
    batch = caption_batch()
    loss, stats = model.loss(batch, 0.0)
    with torch.no_grad():
        s = model.similarity(model.encode_images(batch["images"], batch["n_regions"]),
                             model.encode_captions(batch["tokens"], batch["lengths"]),
                             batch["lengths"], batch["n_regions"])
    expected = 0.0
    for i in range(3):
        expected += max(max(0.0, 0.2 - s[i, i] + s[i, j]) for j in range(3) if j != i)
        expected += max(max(0.0, 0.2 - s[i, i] + s[j, i]) for j in range(3) if j != i)
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-5)
    assert stats["loss"] == pytest.approx(float(loss.detach()))


def test_cache_matches_live_features_and_is_invalidated(tmp_path, monkeypatch):
    store = tf.caption_feature_store(CAPTIONS + CAPTIONS[:1], cache_dir=tmp_path)
    assert len(store) == len(CAPTIONS)  # the duplicate caption is stored once
    assert len(list(tmp_path.glob("*.npz"))) == 1
    tokens, lengths = tf.wordpiece_tokenize(CAPTIONS)
    with torch.no_grad():
        live = tf.minilm_features(tf.frozen_minilm(), tokens, lengths)
    cached, found = store.lookup(tokens, lengths)
    assert found.all()
    assert torch.allclose(cached, live, atol=2e-2, rtol=1e-2)  # float16 storage
    calls = []
    monkeypatch.setattr(tf, "build_store", lambda *a, **k: calls.append(1) or store)
    tf.caption_feature_store(CAPTIONS + CAPTIONS[:1], cache_dir=tmp_path)
    assert calls == []  # same data: read from disk
    changed = CAPTIONS[:3] + ["a large yellow star"] + CAPTIONS[:1]
    tf.caption_feature_store(changed, cache_dir=tmp_path)
    assert calls == [1]  # data changed: recomputed
    # the model uses the store where it covers the tokens, the live encoder elsewhere
    model = small_model()
    tf.register_store(store)
    extra_tokens, extra_lengths = tf.wordpiece_tokenize(CAPTIONS[:1] + ["a large yellow star"])
    words = model.word_features(extra_tokens, extra_lengths)
    with torch.no_grad():
        live2 = tf.minilm_features(tf.frozen_minilm(), extra_tokens, extra_lengths)
    assert torch.allclose(words, live2, atol=2e-2, rtol=1e-2)


def test_finetune_mode_trains_minilm_and_drop_special_tokens():
    torch.manual_seed(4)
    model = MMCA(img_dim=12, embed_size=16, heads=4, text_encoder="finetune",
                 drop_special_tokens=True)
    assert model.bert is not None and any(k.startswith("bert.") for k in model.state_dict())
    tokens, lengths = model.tokenize(CAPTIONS[:2])
    cap = model.encode_captions(tokens, lengths)
    assert cap.shape == (2, tokens.shape[1], 16)  # c0 + L - 1 words ([CLS] dropped)
    n_words = int(lengths[1]) - 2
    assert torch.all(cap[1, 1 + n_words:] == 0) and cap[1, n_words].abs().sum() > 0
    cap[:, 0].sum().backward()
    assert model.bert.embeddings.word_embeddings.weight.grad is not None

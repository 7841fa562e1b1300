"""SCAN's cross attention against a plain per-caption loop written the way the official code
(kuanghuei/SCAN, model.py) computes it: one caption at a time, cut to its length, repeated over
the images, attended, cosine, aggregated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from xmrlib.models.scan_kernel import (AGGREGATIONS, RAW_FEATURE_NORMS, split_scores_over_ranks,
                                       summax_scores, xattn_scores)


def ref_attend(query, context, norm, smooth):
    """query (n, Lq, d), context (n, Lc, d) -> attended context (n, Lq, d), official style."""
    attn = torch.bmm(context, query.transpose(1, 2))  # (n, Lc, Lq)
    if norm.startswith("clipped"):
        attn = torch.nn.LeakyReLU(0.1)(attn)
    if norm.endswith("l2norm"):
        attn = attn / (attn.pow(2).sum(2, keepdim=True).sqrt() + 1e-8)
    elif norm.endswith("l1norm"):
        attn = attn / (attn.abs().sum(2, keepdim=True) + 1e-8)
    elif norm == "softmax":
        attn = torch.softmax(attn, dim=2)
    attn = torch.softmax(attn.transpose(1, 2) * smooth, dim=2)  # (n, Lq, Lc) over the context
    return torch.bmm(attn, context)


def ref_cosine(x, y):
    return (x * y).sum(2) / (x.norm(dim=2) * y.norm(dim=2)).clamp(min=1e-8)


def ref_agg(row, agg, lam):
    if agg == "LSE":
        return torch.log(torch.exp(row * lam).sum(1)) / lam
    if agg == "Max":
        return row.max(1)[0]
    if agg == "Sum":
        return row.sum(1)
    return row.mean(1)


def ref_scores(images, captions, cap_lens, attention, lam, agg, lam_lse, norm, img_lens=None):
    n_img = images.shape[0]
    out = torch.zeros(n_img, captions.shape[0], dtype=images.dtype)
    for j in range(captions.shape[0]):
        cap = captions[j, :cap_lens[j]]
        for i in range(n_img):  # images one by one, so each can have its own region count
            img = images[i, :(img_lens[i] if img_lens is not None else images.shape[1])]
            if attention == "t2i":
                ctx = ref_attend(cap[None], img[None], norm, lam)
                row = ref_cosine(cap[None], ctx)
            else:
                ctx = ref_attend(img[None], cap[None], norm, lam)
                row = ref_cosine(img[None], ctx)
            out[i, j] = ref_agg(row, agg, lam_lse)[0]
    return out


def ref_summax(images, captions, cap_lens, attention):
    out = torch.zeros(images.shape[0], captions.shape[0], dtype=images.dtype)
    for i in range(images.shape[0]):
        for j in range(captions.shape[0]):
            total = 0.0
            regions, words = images[i], captions[j, :cap_lens[j]]
            outer, inner = (words, regions) if attention == "t2i" else (regions, words)
            for q in outer:
                total += max(float(torch.dot(q, k) / (q.norm() * k.norm())) for k in inner)
            out[i, j] = total
    return out


def random_inputs(n_img=5, n_cap=7, n_reg=4, n_word=6, d=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n_img, n_reg, d, generator=g, dtype=dtype)
    captions = torch.randn(n_cap, n_word, d, generator=g, dtype=dtype)
    images = images / images.norm(dim=-1, keepdim=True)
    captions = captions / captions.norm(dim=-1, keepdim=True)
    cap_lens = torch.randint(1, n_word + 1, (n_cap,), generator=g)
    cap_lens[0] = n_word
    return images, captions, cap_lens


@pytest.mark.parametrize("attention,norm", list(itertools.product(("t2i", "i2t"),
                                                                  RAW_FEATURE_NORMS)))
def test_xattn_matches_official_loop(attention, norm):
    images, captions, cap_lens = random_inputs(seed=len(norm))
    lam = 9.0 if attention == "t2i" else 4.0
    for agg in AGGREGATIONS:
        expected = ref_scores(images, captions, cap_lens, attention, lam, agg, 6.0, norm)
        got = xattn_scores(images, captions, cap_lens, attention=attention, lambda_softmax=lam,
                           agg=agg, raw_feature_norm=norm, chunk_size=(2, 3))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_chunking_and_alias_and_numpy_inputs():
    images, captions, cap_lens = random_inputs(n_img=11, n_cap=13)
    full = xattn_scores(images, captions, cap_lens, chunk_size=1000)
    for chunk in [(3, 5), (4, 7), 1]:
        torch.testing.assert_close(xattn_scores(images, captions, cap_lens, chunk_size=chunk),
                                   full, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(xattn_scores(images, captions, cap_lens, direction="t2i"), full)
    got = xattn_scores(images.numpy(), captions.numpy(), cap_lens.numpy(), chunk_size=(4, 4))
    torch.testing.assert_close(got, full, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        xattn_scores(images, captions, cap_lens, attention="t2i", direction="i2t")
    with pytest.raises(ValueError, match="cap_lens"):
        xattn_scores(images, captions, cap_lens * 0)


@pytest.mark.parametrize("attention", ["t2i", "i2t"])
def test_padding_is_ignored(attention):
    images, captions, cap_lens = random_inputs(n_img=4, n_cap=5)
    img_lens = torch.tensor([4, 2, 3, 1])
    expected = ref_scores(images, captions, cap_lens, attention, 5.0, "AVG", 6.0,
                          "clipped_l2norm", img_lens=img_lens)
    # garbage in the padded regions and two extra padded word positions
    junk_images = images.clone()
    for i, n in enumerate(img_lens):
        junk_images[i, n:] = 7.0
    junk_caps = torch.cat([captions, 5 * torch.ones(5, 2, captions.shape[-1])], 1)
    for j, n in enumerate(cap_lens):
        junk_caps[j, n:] = -3.0
    for norm in ["clipped_l2norm", "softmax"]:
        expected = ref_scores(images, captions, cap_lens, attention, 5.0, "AVG", 6.0, norm,
                              img_lens=img_lens)
        got = xattn_scores(junk_images, junk_caps, cap_lens, attention=attention,
                           lambda_softmax=5.0, agg="AVG", raw_feature_norm=norm,
                           img_lens=img_lens, chunk_size=(3, 2))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_gradients_flow():
    images, captions, cap_lens = random_inputs(n_img=2, n_cap=3, n_reg=3, n_word=4, d=5,
                                               dtype=torch.float64)
    images.requires_grad_(True)
    captions.requires_grad_(True)
    img_lens = torch.tensor([3, 2])
    for attention, norm in itertools.product(["t2i", "i2t"], ["clipped_l2norm", "softmax"]):
        def fn(im, ca):
            return xattn_scores(im, ca, cap_lens, attention=attention, raw_feature_norm=norm,
                                img_lens=img_lens, chunk_size=(1, 2))
        assert torch.autograd.gradcheck(fn, (images, captions))


@pytest.mark.parametrize("attention", ["t2i", "i2t"])
def test_summax_matches_loop(attention):
    images, captions, cap_lens = random_inputs(n_img=3, n_cap=4)
    images = images * 2.5  # raw cosine, independent of the norms
    got = summax_scores(images, captions, cap_lens, attention=attention, chunk_size=(2, 3))
    torch.testing.assert_close(got, ref_summax(images, captions, cap_lens, attention),
                               atol=1e-5, rtol=1e-5)


def test_split_over_ranks_equals_single_process():
    images, captions, cap_lens = random_inputs(n_img=4, n_cap=11)
    full = xattn_scores(images, captions, cap_lens, attention="i2t", agg="AVG")
    parts = [split_scores_over_ranks(xattn_scores, images, captions, cap_lens, rank=r,
                                     world_size=3, attention="i2t", agg="AVG")
             for r in range(3)]
    assert [p.shape[1] for p in parts] == [3, 4, 4]
    torch.testing.assert_close(torch.cat(parts, 1), full)
    torch.testing.assert_close(split_scores_over_ranks(
        xattn_scores, images, captions, cap_lens, attention="i2t", agg="AVG"), full)


def test_memory_mapped_captions(tmp_path):
    images, captions, cap_lens = random_inputs(n_img=3, n_cap=9)
    path = tmp_path / "caps.npy"
    np.save(path, captions.numpy())
    mm = np.load(path, mmap_mode="r")
    torch.testing.assert_close(xattn_scores(images, mm, cap_lens, chunk_size=(2, 4)),
                               xattn_scores(images, captions, cap_lens), atol=1e-6, rtol=1e-6)


def test_model_loss_is_hinge_of_score_matrix():
    vocab_mod = pytest.importorskip("xmrlib.vocab")
    from xmrlib.losses import hinge_triplet_loss
    from xmrlib.models import build_model

    captions = ["a red circle", "a blue square left of a circle", "green", "two red squares"]
    vocab = vocab_mod.Vocabulary.build(captions).to_dict()
    torch.manual_seed(0)
    for name in ["scan", "summax"]:
        model = build_model(name, vocab=vocab, img_dim=6, embed_size=8, word_dim=5,
                            attention="i2t", agg="AVG", lambda_softmax=4.0)
        tokens, lengths = model.tokenize(captions)
        images = torch.randn(4, 3, 6)
        n_regions = torch.tensor([3, 2, 3, 1])
        batch = {"images": images, "n_regions": n_regions, "tokens": tokens, "lengths": lengths}
        loss, _ = model.loss(batch, 0.5)
        img = model.encode_images(images, n_regions)
        cap = model.encode_captions(tokens, lengths)
        if name == "scan":
            scores = ref_scores(img, cap, lengths, "i2t", 4.0, "AVG", 6.0, "clipped_l2norm",
                                img_lens=n_regions)
        else:
            scores = model.similarity(img, cap, lengths, n_regions)
        expected = hinge_triplet_loss(scores, margin=0.2, max_violation=True)
        torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
        loss.backward()
        assert model.txt_enc.embed.weight.grad.abs().sum() > 0


def test_warmup_switches_from_sum_to_hardest_negatives():
    from xmrlib.losses import hinge_triplet_loss
    from xmrlib.models import build_model
    from xmrlib.vocab import Vocabulary

    captions = ["a red circle", "a blue square left of a circle", "green", "two red squares"]
    torch.manual_seed(0)
    model = build_model("scan", vocab=Vocabulary.build(captions).to_dict(), img_dim=6,
                        embed_size=8, word_dim=5, warmup=0.5)
    tokens, lengths = model.tokenize(captions)
    batch = {"images": torch.randn(4, 3, 6), "n_regions": torch.tensor([3, 2, 3, 1]),
             "tokens": tokens, "lengths": lengths}
    with torch.no_grad():
        img = model.encode_images(batch["images"], batch["n_regions"])
        scores = model.similarity(img, model.encode_captions(tokens, lengths), lengths,
                                  batch["n_regions"])
        for progress, hardest in [(0.0, False), (0.49, False), (0.5, True), (0.9, True)]:
            want = hinge_triplet_loss(scores, margin=0.2, max_violation=hardest)
            torch.testing.assert_close(model.loss(batch, progress)[0], want)
        assert not torch.allclose(hinge_triplet_loss(scores, 0.2, max_violation=False),
                                  hinge_triplet_loss(scores, 0.2, max_violation=True))
    with pytest.raises(ValueError, match="warmup"):
        build_model("scan", vocab=model.config["vocab"], img_dim=6, warmup=1.5)


def test_word_attention_equals_plain_loop_and_rows_sum_to_one():
    from xmrlib.models import build_model
    from xmrlib.models.scan import word_attention
    from xmrlib.vocab import Vocabulary

    captions = ["a red circle above a blue square", "two shapes"]
    vocab = Vocabulary.build(captions).to_dict()
    torch.manual_seed(1)
    model = build_model("scan", vocab=vocab, img_dim=6, embed_size=8, word_dim=5,
                        lambda_softmax=9.0).eval()
    feats = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)  # 2 padded rows
    tokens, lengths = model.tokenize(captions[:1])
    got = word_attention(model, feats, 3, tokens, lengths)
    with torch.no_grad():
        v = model.encode_images(torch.from_numpy(feats[None, :3]))[0].tolist()
        w = model.encode_captions(tokens, lengths)[0].tolist()
    sim = [[sum(a * b for a, b in zip(wl, vr)) for vr in v] for wl in w]
    sim = [[x if x > 0 else 0.1 * x for x in row] for row in sim]  # LeakyReLU(0.1)
    col = [sum(row[r] ** 2 for row in sim) ** 0.5 + 1e-8 for r in range(3)]  # over the words
    expected = []
    for row in sim:
        e = [np.exp(9.0 * row[r] / col[r]) for r in range(3)]
        expected.append([x / sum(e) for x in e])
    assert got.shape == (int(lengths[0]), 3)
    np.testing.assert_allclose(got, np.array(expected), atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)
    # the same weights give xattn_scores' t2i AVG score (mean cosine of word and context)
    v_t, w_t = torch.tensor(v), torch.tensor(w)
    ctx = torch.from_numpy(got) @ v_t
    avg = torch.nn.functional.cosine_similarity(w_t, ctx, dim=1).mean()
    ref = xattn_scores(v_t[None], w_t[None], lengths, agg="AVG", lambda_softmax=9.0)[0, 0]
    assert abs(float(avg) - float(ref)) < 1e-5
    i2t = build_model("scan", vocab=vocab, img_dim=6, embed_size=8, word_dim=5,
                      attention="i2t")
    with pytest.raises(ValueError, match="text-to-image"):
        word_attention(i2t, feats, 3, tokens, lengths)


def test_binding_ceiling_hand_case_and_bound():
    from xmrlib.evaluation import binding_accuracy, binding_ceiling

    # group 0 = images 0, 1 share text "a"; group 1 = image 2 holds "a" twice (its own, no twin)
    captions = ["a", "b", "a", "c", "a", "a"]
    groups = np.array([0, 0, 1])
    assert binding_ceiling(captions, groups, 2) == pytest.approx(5 / 6)
    # reachable: image 0 wins "a", every distinct text wins its own image
    sims = np.array([[1.0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 1]])
    assert binding_accuracy(sims, groups, 2) == pytest.approx(5 / 6)
    # and never beaten: equal texts get equal scores under any model
    rng = np.random.default_rng(0)
    texts = ["x", "y", "z"]
    caps = [texts[t] for t in rng.integers(0, 3, size=40)]
    grp = np.repeat(np.arange(4), [2, 3, 2, 3])
    ceiling = binding_ceiling(caps, grp, 4)
    for _ in range(200):
        per_text = rng.normal(size=(10, 3))  # (images, texts): a model that reads the text only
        s = per_text[:, [texts.index(c) for c in caps]]
        assert binding_accuracy(s, grp, 4) <= ceiling + 1e-12


@pytest.mark.parametrize("attention", ["t2i", "i2t"])
def test_small_groups_and_large_logits_match_loop(attention, monkeypatch):
    """One context sample per group (GROUP_ELEMENTS = 1), padded regions, and logits far
    outside exp's float32 range (unnormalised features, lambda 40) still equal the loop."""
    import xmrlib.models.scan_kernel as kernel

    images, captions, cap_lens = random_inputs(n_img=5, n_cap=6)
    img_lens = torch.tensor([4, 2, 3, 1, 4])
    for group in [1, 50]:
        monkeypatch.setattr(kernel, "GROUP_ELEMENTS", group)
        for norm, scale, lam in [("clipped_l2norm", 1.0, 9.0), ("no_norm", 3.0, 40.0),
                                 ("l1norm", 1.0, 4.0)]:
            imgs = images * scale
            expected = ref_scores(imgs, captions, cap_lens, attention, lam, "LSE", 6.0, norm,
                                  img_lens=img_lens)
            got = xattn_scores(imgs, captions, cap_lens, attention=attention, lambda_softmax=lam,
                               raw_feature_norm=norm, img_lens=img_lens, chunk_size=(3, 4))
            assert torch.isfinite(got).all()
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_gradients_with_small_groups(monkeypatch):
    import xmrlib.models.scan_kernel as kernel

    monkeypatch.setattr(kernel, "GROUP_ELEMENTS", 1)
    images, captions, cap_lens = random_inputs(n_img=3, n_cap=2, n_reg=3, n_word=4, d=5,
                                               dtype=torch.float64)
    images.requires_grad_(True)
    captions.requires_grad_(True)
    for attention, agg in [("t2i", "LSE"), ("i2t", "AVG"), ("t2i", "Max")]:
        def fn(im, ca):
            return xattn_scores(im, ca, cap_lens, attention=attention, agg=agg,
                                img_lens=torch.tensor([3, 1, 2]), chunk_size=(2, 1))
        assert torch.autograd.gradcheck(fn, (images, captions))


def test_length_runs_hand_case():
    from xmrlib.models.scan_kernel import _length_runs

    # half full (2) first, then on while the length repeats, never past 4
    assert _length_runs([8, 8, 9, 9, 9, 10], 4) == [(0, 2), (2, 5), (5, 6)]
    assert _length_runs([5] * 7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert _length_runs([], 4) == []


def test_public_path_of_xattn_scores():
    """The design card's name ``xmrlib.models.scan.xattn_scores`` is the kernel's function."""
    import xmrlib.models.scan as scan

    assert scan.xattn_scores is xattn_scores


def test_ensemble_scores_from_member_matrices():
    """Scoring the ensemble from its members' stored score matrices (chapter 04) gives the
    metrics of evaluating the ensemble model itself, on one gallery and on 5 folds."""
    from types import SimpleNamespace

    from xmrlib.evaluation import evaluate, sims_metrics
    from xmrlib.models import build_model
    from xmrlib.models.scan import SCANEnsemble
    from xmrlib.vocab import Vocabulary

    rng = np.random.default_rng(0)
    words = ["red", "blue", "circle", "square", "left", "of", "a", "two"]
    captions = [" ".join(rng.choice(words, rng.integers(2, 6))) for _ in range(50)]
    data = SimpleNamespace(images=rng.standard_normal((10, 3, 6)).astype(np.float32),
                           n_regions=rng.integers(1, 4, 10), captions=captions,
                           captions_per_image=5, groups=np.arange(10) // 2)
    vocab = Vocabulary.build(captions).to_dict()
    torch.manual_seed(0)
    first, second = (build_model("scan", vocab=vocab, img_dim=6, embed_size=8, word_dim=5,
                                 attention=a, agg=g) for a, g in (("t2i", "AVG"), ("i2t", "LSE")))
    ensemble = SCANEnsemble.from_models(first, second)
    for protocol in ("1k", "5fold1k"):
        _, s1 = evaluate(first, data, protocol, device="cpu", return_sims=True)
        _, s2 = evaluate(second, data, protocol, device="cpu", return_sims=True)
        want, s_ens = evaluate(ensemble, data, protocol, device="cpu", return_sims=True)
        got = sims_metrics(SCANEnsemble.average(s1, s2), data, protocol)
        assert got == pytest.approx(want, abs=1e-9)
        pairs = zip(*(s if isinstance(s, list) else [s] for s in (s_ens, s1, s2)))
        for ens, a, b in pairs:  # element by element, as the paper defines it
            np.testing.assert_allclose(ens, [[(a[i, j] + b[i, j]) / 2 for j in range(a.shape[1])]
                                             for i in range(a.shape[0])], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attention,agg,norm", [("t2i", "LSE", "clipped_l2norm"),
                                                ("i2t", "AVG", "clipped_l2norm"),
                                                ("t2i", "Max", "softmax")])
def test_pair_scores_equal_the_grid_entries(attention, agg, norm):
    """Aligned pairs (a two-stage shortlist) score what the full grid gives those pairs, with
    padded regions and words; in blocks smaller than the number of pairs."""
    from xmrlib.models import build_model
    from xmrlib.vocab import Vocabulary

    captions = ["a red circle", "a blue square left of a circle", "green", "two red squares",
                "a small green circle above a square"]
    torch.manual_seed(0)
    model = build_model("scan", vocab=Vocabulary.build(captions).to_dict(), img_dim=6,
                        embed_size=8, word_dim=5, attention=attention, agg=agg,
                        raw_feature_norm=norm).eval()
    tokens, lengths = model.tokenize(captions)
    n_regions = torch.tensor([3, 1, 2, 3])
    with torch.no_grad():
        img = model.encode_images(torch.randn(4, 3, 6), n_regions)
        cap = model.encode_captions(tokens, lengths)
        grid = model.similarity(img, cap, lengths, n_regions)  # (4, 5)
        ii = torch.tensor([0, 3, 1, 1, 2, 0, 3])
        cc = torch.tensor([4, 0, 2, 1, 3, 0, 4])
        got = model.pair_scores(img, cap, ii, cc, lengths, n_regions, block=3)
    torch.testing.assert_close(got, grid[ii, cc], rtol=1e-5, atol=1e-6)
    assert model.pair_scores(img, cap, ii[:0], cc[:0], lengths, n_regions).shape == (0,)

"""Kiros VSE and VSE++: shapes, masks, padding, flags, warm-up and the loss against plain loops."""

from __future__ import annotations

import json

import pytest
import torch

from xmrlib.models import build_model
from xmrlib.models.vse import KirosVSE
from xmrlib.models.vsepp import VSE0_FLAGS, VSEPP, VSEPP_FLAGS
from xmrlib.vocab import Vocabulary

WORDS = "a red blue green circle square star left of right above below the is".split()


def tiny_vocab() -> Vocabulary:
    """A vocabulary over the words above (built from captions, as chapters do; each word five
    times so a frequency threshold keeps it)."""
    return Vocabulary.build([" ".join(WORDS)] * 5)


def make_batch(n: int, seed: int = 0, img_dim: int = 6, max_regions: int = 3) -> dict:
    """A batch dict (CONTRIBUTING.md) with variable region counts and caption lengths."""
    g = torch.Generator().manual_seed(seed)
    n_regions = torch.randint(1, max_regions + 1, (n,), generator=g)
    images = torch.randn(n, max_regions, img_dim, generator=g)
    images[torch.arange(max_regions)[None, :] >= n_regions[:, None]] = 0.0  # zero padding
    lengths = torch.randint(2, 8, (n,), generator=g)
    tokens = torch.randint(1, len(tiny_vocab()), (n, int(lengths.max())), generator=g)  # 0: pad
    tokens[torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]] = 0
    return {"images": images, "n_regions": n_regions, "tokens": tokens, "lengths": lengths,
            "image_idx": torch.arange(n), "caption_idx": torch.arange(n)}


def _models(**kw) -> list:
    torch.manual_seed(0)
    vocab = tiny_vocab().to_dict()
    return [KirosVSE(vocab, img_dim=6, embed_size=8, word_dim=5, **kw),
            VSEPP(vocab, img_dim=6, embed_size=8, word_dim=5, **kw)]


def test_defaults_are_the_papers():
    for cls, rnn in ((KirosVSE, torch.nn.LSTM), (VSEPP, torch.nn.GRU)):
        model = cls(tiny_vocab().to_dict(), img_dim=6)
        assert (model.config["embed_size"], model.config["word_dim"]) == (1024, 300)
        assert model.margin == 0.2 and isinstance(model.txt_enc.rnn, rnn)
    assert KirosVSE(tiny_vocab().to_dict(), 6).config["max_violation"] is False
    assert VSEPP(tiny_vocab().to_dict(), 6).config["max_violation"] is True


def test_shapes_and_normalisation():
    batch = make_batch(5)
    kiros, vsepp = _models()
    for model in (kiros, vsepp):
        img = model.encode_images(batch["images"], batch["n_regions"])
        cap = model.encode_captions(batch["tokens"], batch["lengths"])
        assert img.shape == (5, 8) and cap.shape == (5, 8)
        assert torch.allclose(cap.norm(dim=1), torch.ones(5), atol=1e-5)
        assert model.similarity(img[:3], cap).shape == (3, 5)
    assert torch.allclose(vsepp.encode_images(batch["images"], batch["n_regions"]).norm(dim=1),
                          torch.ones(5), atol=1e-5)
    kiros_norms = kiros.encode_images(batch["images"], batch["n_regions"]).norm(dim=1)
    assert not torch.allclose(kiros_norms, torch.ones(5), atol=1e-2)  # training: raw W v


def test_kiros_normalises_images_only_at_test_time_vse0_never():
    batch = make_batch(5)
    kiros, _ = _models()
    torch.manual_seed(0)
    vse0 = VSEPP(tiny_vocab().to_dict(), img_dim=6, embed_size=8, word_dim=5, **VSE0_FLAGS)
    for model, normalised_in_eval in ((kiros, True), (vse0, False)):
        raw = model.encode_images(batch["images"], batch["n_regions"])
        model.eval()
        with torch.no_grad():
            got = model.encode_images(batch["images"], batch["n_regions"])
        want = raw / raw.norm(dim=1, keepdim=True) if normalised_in_eval else raw
        assert torch.allclose(got, want, atol=1e-6)


def test_image_encoder_is_a_masked_mean_then_linear():
    batch = make_batch(4)
    for model in _models():
        fc = model.img_enc.fc
        want = []
        for i in range(4):
            k = int(batch["n_regions"][i])
            want.append(fc(batch["images"][i, :k].mean(0)))
        want = torch.stack(want)
        if model.config["image_norm"]:
            want = want / want.norm(dim=1, keepdim=True)
        noisy = batch["images"].clone()
        noisy[torch.arange(3)[None, :] >= batch["n_regions"][:, None]] = 5.0  # garbage padding
        got = model.encode_images(noisy, batch["n_regions"])
        assert torch.allclose(got, want, atol=1e-5)


def test_caption_encoder_matches_unpadded_rnn_and_ignores_padding():
    batch = make_batch(6, seed=3)
    for model in _models():
        with torch.no_grad():
            got = model.encode_captions(batch["tokens"], batch["lengths"])
            extra = torch.cat([batch["tokens"], torch.zeros(6, 4, dtype=torch.long)], dim=1)
            assert torch.allclose(model.encode_captions(extra, batch["lengths"]), got, atol=1e-6)
            for i in range(6):  # one caption at a time, no padding at all
                words = batch["tokens"][i, :batch["lengths"][i]].unsqueeze(0)
                _, hidden = model.txt_enc.rnn(model.txt_enc.embed(words))
                h = hidden[0] if isinstance(hidden, tuple) else hidden
                want = h[-1, 0] / h[-1, 0].norm()
                assert torch.allclose(got[i], want, atol=1e-5)


def _hinge_loop(s: torch.Tensor, margin: float, max_violation: bool) -> float:
    """Plain double loop: for each positive pair, the hinge over every (or the worst) negative."""
    n, s = s.shape[0], s.tolist()
    total = 0.0
    for i in range(n):
        by_caption = [max(0.0, margin - s[i][i] + s[i][j]) for j in range(n) if j != i]
        by_image = [max(0.0, margin - s[i][i] + s[j][i]) for j in range(n) if j != i]
        if max_violation:
            total += max(by_caption) + max(by_image)
        else:
            total += sum(by_caption) + sum(by_image)
    return total


@pytest.mark.parametrize("max_violation", [False, True])
def test_loss_against_loop(max_violation):
    batch = make_batch(6, seed=2)
    for model in _models(max_violation=max_violation):
        loss, info = model.loss(batch, progress=0.3)
        with torch.no_grad():
            s = model.similarity(model.encode_images(batch["images"], batch["n_regions"]),
                                 model.encode_captions(batch["tokens"], batch["lengths"]))
        assert abs(loss.item() - _hinge_loop(s, 0.2, max_violation)) < 1e-4
        assert info["max_violation"] == float(max_violation)


def test_warmup_switches_from_sum_to_max_violation():
    torch.manual_seed(0)
    model = VSEPP(tiny_vocab().to_dict(), img_dim=6, embed_size=8, word_dim=5, warmup=0.25)
    batch = make_batch(6, seed=4)
    assert [model.uses_max_violation(p) for p in (0.0, 0.2, 0.25, 0.9)] == [False, False, True, True]
    with torch.no_grad():
        s = model.similarity(model.encode_images(batch["images"], batch["n_regions"]),
                             model.encode_captions(batch["tokens"], batch["lengths"]))
    assert abs(model.loss(batch, 0.1)[0].item() - _hinge_loop(s, 0.2, False)) < 1e-4
    assert abs(model.loss(batch, 0.5)[0].item() - _hinge_loop(s, 0.2, True)) < 1e-4
    with pytest.raises(ValueError, match="warmup"):
        VSEPP(tiny_vocab().to_dict(), img_dim=6, warmup=2.0)


def test_vse0_and_vsepp_flags():
    assert VSE0_FLAGS == {"max_violation": False, "image_norm": False}
    assert VSEPP_FLAGS == {"max_violation": True, "image_norm": True}


def test_config_rebuilds_the_model():
    for model in _models():
        config = json.loads(json.dumps(model.config))  # JSON-able
        twin = build_model(model.name, **config)
        twin.load_state_dict(model.state_dict())
        batch = make_batch(3)
        with torch.no_grad():
            assert torch.equal(twin.encode_captions(batch["tokens"], batch["lengths"]),
                               model.encode_captions(batch["tokens"], batch["lengths"]))
        tokens, lengths = model.tokenize(["a red circle", "the blue star is left of a square"])
        assert tokens.shape[0] == 2 and lengths.tolist()[1] > lengths.tolist()[0]

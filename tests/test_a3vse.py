"""A3VSE: gradient reversal, discriminator losses, attentive encoder, ablation switches."""

import math

import pytest
import torch

from xmrlib.models.a3vse import (A3VSE, DISCRIMINATORS, AttentiveEncoder, domain_bce,
                                 gradient_reversal, grl_schedule)
from xmrlib.vocab import Vocabulary

WORDS = "red green blue circle square triangle big small left of right above below".split()
B, R, D, H, K = 4, 5, 6, 8, 3


def make_model(**kw) -> A3VSE:
    torch.manual_seed(0)
    vocab = Vocabulary.build([" ".join(WORDS)], threshold=1).to_dict()
    return A3VSE(vocab, img_dim=D, embed_size=H, word_dim=5, heads=K, disc_hidden=7, **kw)


def make_batch(model: A3VSE, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    caps = ["red circle left of blue square", "small green triangle", "big blue circle",
            "green square above red triangle"]
    sems = ["red circle blue square", "green triangle", "blue circle red square green", "red"]
    tokens, lengths = model.tokenize(caps)
    s_tokens, s_lengths = model.tokenize(sems)
    return {"images": torch.randn(B, R, D, generator=g), "n_regions": torch.tensor([5, 3, 2, 4]),
            "tokens": tokens, "lengths": lengths,
            "u_images": torch.randn(B, R, D, generator=g),
            "u_n_regions": torch.tensor([2, 5, 4, 3]),
            "s_tokens": s_tokens, "s_lengths": s_lengths}


def grads(model: A3VSE, batch: dict, progress: float) -> dict[str, torch.Tensor | None]:
    model.zero_grad(set_to_none=True)
    loss, _ = model.loss(batch, progress)
    loss.backward()
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}


# --------------------------------------------------------------------------- reversal, BCE

def test_gradient_reversal_negates_and_scales():
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(3, 4)
    y = gradient_reversal(x, 0.7)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.7 * w)  # d/dx sum(x * w) = w, reversed and scaled


def test_grl_schedule_values():
    assert grl_schedule(0.0) == 0.0
    assert grl_schedule(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_schedule(1.0) == pytest.approx(0.9999092, abs=1e-6)


def test_domain_bce_hand_computed():
    # D(a) = sigmoid(0) = 0.5 and sigmoid(ln 3) = 0.75; D(b) = 0.75 -> log(1 - 0.75)
    a = torch.tensor([0.0, math.log(3)])
    b = torch.tensor([math.log(3)])
    expected = -(math.log(0.5) + math.log(0.75)) / 2 - math.log(0.25)
    assert domain_bce(a, b).item() == pytest.approx(expected, rel=1e-6)


def test_discriminator_loss_on_hand_set_weights():
    model = make_model(adversarial=("cross",))
    for disc in model.discriminators.values():
        for p in disc.parameters():
            torch.nn.init.zeros_(p)
        disc.net[-1].bias.data.fill_(math.log(3))  # every logit = ln 3, D = 0.75
    emb = {k: torch.randn(2, model.embed_dim) for k in ("v", "vu", "t", "s")}
    out = model.adversarial_losses(emb, gamma=0.5)
    assert set(out) == {"v_t", "vu_s"}
    for value in out.values():
        assert value.item() == pytest.approx(-math.log(0.75) - math.log(0.25), rel=1e-6)


# --------------------------------------------------------------------------- encoders

def naive_attention(enc: AttentiveEncoder, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Eq. 1 written with loops over samples, heads and entities."""
    kp = enc.attn_dim
    out = []
    for n in range(x.shape[0]):
        valid = x[n, : int(lengths[n])]
        context = valid.mean(0)
        heads = []
        for k in range(enc.heads):
            pk = enc.P.weight[k * kp:(k + 1) * kp]
            qk = enc.Q.weight[k * kp:(k + 1) * kp]
            alpha = torch.stack([torch.tanh(pk @ context) @ torch.tanh(qk @ v) for v in valid])
            w = torch.exp(enc.temperature * alpha)
            w = w / w.sum()
            heads.append(sum(w[i] * valid[i] for i in range(len(valid))))
        out.append(torch.cat(heads))
    return torch.stack(out)


def test_attentive_encoder_matches_loops_and_ignores_padding():
    torch.manual_seed(0)
    enc = AttentiveEncoder(H, heads=K, attn_dim=4, temperature=2.0)
    x = torch.randn(3, 5, H)
    lengths = torch.tensor([5, 2, 3])
    got = enc(x, lengths)
    assert got.shape == (3, K * H)
    assert torch.allclose(got, naive_attention(enc, x, lengths), atol=1e-5)
    junk = x.clone()
    junk[1, 2:] = 100.0  # padding content must not matter
    assert torch.allclose(enc(junk, lengths), got, atol=1e-6)


def test_forward_shapes_and_padding_invariance():
    model = make_model()
    batch = make_batch(model)
    img = model.encode_images(batch["images"], batch["n_regions"])
    cap = model.encode_captions(batch["tokens"], batch["lengths"])
    assert img.shape == (B, K * H) and cap.shape == (B, K * H)
    assert torch.allclose(img.norm(dim=1), torch.ones(B), atol=1e-5)
    padded = batch["images"].clone()
    padded[2, 2:] = 50.0  # image 2 has 2 valid regions
    assert torch.allclose(model.encode_images(padded, batch["n_regions"]), img, atol=1e-6)
    longer = torch.cat([batch["tokens"], torch.zeros(B, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(model.encode_captions(longer, batch["lengths"]), cap, atol=1e-6)
    assert model.similarity(img, cap).shape == (B, B)


# --------------------------------------------------------------------------- ablations

def disc_grads_present(g: dict, names: set[str]) -> None:
    for n, grad in g.items():
        if n.startswith("discriminators."):
            d = n.split(".")[1]
            if d in names:
                assert grad is not None and grad.abs().sum() > 0, n
            else:
                assert grad is None, n


def test_full_model_terms_and_gradient_reversal_in_the_loss():
    model = make_model()
    batch = make_batch(model)
    loss, stats = model.loss(batch, 0.3)
    assert {f"bce_{d}" for d in DISCRIMINATORS} <= set(stats)
    tri = model.beta * stats["tri_vt"] + (1 - model.beta) * stats["tri_vs"]
    adv = sum(model.weights[d] * stats[f"bce_{d}"] for d in DISCRIMINATORS)
    assert loss.item() == pytest.approx(tri + adv, rel=1e-5)
    disc_grads_present(grads(model, batch, 0.3), set(DISCRIMINATORS))
    # encoder gradient = d tri - gamma * d adv (explicitly, with the two parts separately)
    gamma = grl_schedule(0.3)
    full = grads(model, batch, 0.3)
    model.zero_grad(set_to_none=True)
    v = model.encode_images(batch["images"], batch["n_regions"])
    t = model.encode_captions(batch["tokens"], batch["lengths"])
    vu = model.encode_images(batch["u_images"], batch["u_n_regions"])
    s = model.encode_captions(batch["s_tokens"], batch["s_lengths"])
    tri_loss = (model.beta * model.triplet(v, t, 0.2)
                + (1 - model.beta) * model.triplet(vu, s, 0.3))
    emb = {"v": v, "vu": vu, "t": t, "s": s}
    adv_loss = sum(model.weights[d] * domain_bce(model.discriminators[d](emb[a]),
                                                 model.discriminators[d](emb[b]))
                   for d, (_, a, b) in DISCRIMINATORS.items())
    enc = [p for n, p in model.named_parameters() if n.startswith("img_fc")]
    g_tri = torch.autograd.grad(tri_loss, enc, retain_graph=True)
    g_adv = torch.autograd.grad(adv_loss, enc)
    names = [n for n, _ in model.named_parameters() if n.startswith("img_fc")]
    for name, gt, ga in zip(names, g_tri, g_adv):
        assert torch.allclose(full[name], gt - gamma * ga, atol=1e-6)


def test_gamma_zero_at_start_leaves_encoders_to_the_triplet():
    model = make_model()
    batch = make_batch(model)
    full = grads(model, batch, 0.0)
    no_adv = make_model(adversarial=())
    g = grads(no_adv, batch, 0.0)
    assert torch.allclose(full["img_fc.fc.weight"], g["img_fc.fc.weight"], atol=1e-7)


@pytest.mark.parametrize("removed", ["intra", "cross", "trans"])
def test_removing_one_group_removes_its_discriminators(removed):
    groups = tuple(gr for gr in ("intra", "cross", "trans") if gr != removed)
    model = make_model(adversarial=groups)
    batch = make_batch(model)
    _, stats = model.loss(batch, 0.5)
    kept = {d for d, (gr, _, _) in DISCRIMINATORS.items() if gr != removed}
    assert {k[4:] for k in stats if k.startswith("bce_")} == kept
    disc_grads_present(grads(model, batch, 0.5), kept)


def test_without_adversarial_loss_is_the_weighted_triplet():
    model = make_model(adversarial=())
    batch = make_batch(model)
    loss, stats = model.loss(batch, 0.9)
    assert loss.item() == pytest.approx(0.8 * stats["tri_vt"] + 0.2 * stats["tri_vs"], rel=1e-6)
    disc_grads_present(grads(model, batch, 0.9), set())


def test_no_semantics_is_the_vanilla_model():
    model = make_model(semantics=False)
    batch = {k: v for k, v in make_batch(model).items() if not k.startswith(("u_", "s_"))}
    loss, stats = model.loss(batch, 0.5)
    v = model.encode_images(batch["images"], batch["n_regions"])
    t = model.encode_captions(batch["tokens"], batch["lengths"])
    assert loss.item() == pytest.approx(model.triplet(v, t, 0.2).item(), rel=1e-6)
    assert set(stats) == {"tri_vt"}
    disc_grads_present(grads(model, batch, 0.5), set())


def test_without_attention_uses_mean_pooling():
    model = make_model(attention=False)
    batch = make_batch(model)
    g = grads(model, batch, 0.5)
    assert all(g[n] is None for n in g if "_attn." in n)
    assert g["img_fc.fc.weight"] is not None
    img = model.encode_images(batch["images"], batch["n_regions"])
    assert img.shape == (B, H)
    regions = model.img_fc(batch["images"])
    mean = torch.stack([regions[i, : int(n)].mean(0) for i, n in enumerate(batch["n_regions"])])
    assert torch.allclose(img, mean / mean.norm(dim=1, keepdim=True), atol=1e-6)


def test_bad_switches_are_refused():
    with pytest.raises(ValueError, match="adversarial groups"):
        make_model(adversarial=("intra", "global"))
    model = make_model()
    batch = {k: v for k, v in make_batch(model).items() if not k.startswith(("u_", "s_"))}
    with pytest.raises(KeyError, match="SparseLoader"):
        model.loss(batch, 0.1)


def naive_triplet(scores: torch.Tensor, margin: float, hardest: bool) -> float:
    """Eq. 2 with plain loops: per positive pair, both directions, hardest or summed, mean."""
    n = scores.shape[0]
    total = 0.0
    for i in range(n):
        pos = scores[i, i].item()
        c = [max(0.0, margin - pos + scores[i, j].item()) for j in range(n) if j != i]
        im = [max(0.0, margin - pos + scores[j, i].item()) for j in range(n) if j != i]
        total += (max(c) + max(im)) if hardest else (sum(c) + sum(im))
    return total / n


@pytest.mark.parametrize("hardest", [True, False])
def test_triplet_hardest_or_sum_matches_loops(hardest):
    model = make_model(max_violation=hardest)
    g = torch.Generator().manual_seed(3)
    v = torch.nn.functional.normalize(torch.randn(B, K * H, generator=g), dim=1)
    t = torch.nn.functional.normalize(torch.randn(B, K * H, generator=g), dim=1)
    expected = naive_triplet(v @ t.t(), 0.3, hardest)
    assert model.triplet(v, t, 0.3).item() == pytest.approx(expected, rel=1e-5)
    assert model.config["max_violation"] is hardest


def test_collapsed_embeddings_cost_twice_the_margin_with_hardest_negatives():
    # the plateau seen in short runs: all embeddings equal -> every hinge is exactly the margin
    model = make_model()
    e = torch.nn.functional.normalize(torch.ones(B, K * H), dim=1)
    assert model.triplet(e, e, 0.2).item() == pytest.approx(0.4, rel=1e-6)
    summed = make_model(max_violation=False).triplet(e, e, 0.2).item()
    assert summed == pytest.approx(2 * (B - 1) * 0.2, rel=1e-6)


def _sparse_runs(shapes_root, protocol="1k"):
    from xmrlib.data import load_precomp
    from xmrlib.sparse_runs import SparseRuns
    from xmrlib.train import TrainConfig

    train, dev, test = (load_precomp(shapes_root, s) for s in ("train", "dev", "test"))
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, seed=0, eval_protocol="1k")
    small = dict(embed_size=8, word_dim=8, max_violation=False)
    return SparseRuns(train, dev, test, {**small, "disc_hidden": 8}, {"vsepp": small}, cfg,
                      steps_per_epoch=2, protocol=protocol, device="cpu")


def test_paired_bootstrap_delta_is_the_rsum_difference(shapes_root):
    """The mean over test images of each image's rsum share is rsum, so the bootstrap's delta
    equals the difference of the two runs' rsum, whether or not metrics() ran first (cached
    shares vs an evaluation of its own); and the interval holds the delta."""
    a, b = ("a3vse", 0.5, 5), ("vsepp", 0.5, 5)
    fresh = _sparse_runs(shapes_root)
    cold = fresh.paired_bootstrap(a, b, n_boot=200)  # evaluates both runs itself
    runs = _sparse_runs(shapes_root)  # reloads the same run folders
    want = runs.metrics(*a)["rsum"] - runs.metrics(*b)["rsum"]
    warm = runs.paired_bootstrap(a, b, n_boot=200)
    assert warm["delta"] == pytest.approx(want, abs=1e-9)
    assert cold == warm
    assert warm["ci_low"] <= warm["delta"] <= warm["ci_high"]
    assert runs.paired_bootstrap(a, a, n_boot=50)["delta"] == 0.0


def test_sparse_runs_selected_on_another_dev_set_are_other_runs(shapes_root):
    from xmrlib.data import first_images

    runs = _sparse_runs(shapes_root)
    whole = runs.fit("vsepp", 0.5, 5).run_dir
    assert runs.fit("vsepp", 0.5, 5).run_dir == whole  # cached
    runs.dev = first_images(runs.dev, 5)
    runs._fits.clear()
    assert runs.fit("vsepp", 0.5, 5).run_dir != whole

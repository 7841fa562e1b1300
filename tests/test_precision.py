"""Precision under bfloat16 autocast, emulated on the CPU (``torch.autocast("cpu", bfloat16)``).

On a GPU, training runs under bfloat16 autocast (``TrainConfig.amp="auto"``). Two things must
still happen in float32, and both are checked here on the CPU, where the same autocast policy
applies to matrix products:

* **Scores and losses.** For every model, the score matrix that reaches the hinge loss must be
  float32 *and* equal, to float32 rounding, to the model's scoring function applied in float32
  (autocast off) to the same embeddings. bfloat16 keeps 8 bits of mantissa: scores near 1 are
  rounded in steps of about 0.004, which is what the reference comparison would see.
* **The recurrent text encoder** must run outside autocast, on float32 input: torch's cuDNN RNN
  autocast wrapper casts to float16 whatever dtype autocast was given (see
  :class:`xmrlib.models.common.RNNTextEncoder`). A hook on the GRU/LSTM records the autocast
  state and the dtype it sees; with autocast on there, the CUDA kernel would be the float16 one.
"""

from __future__ import annotations

import pytest
import torch

from xmrlib import text_features as tf
from xmrlib.models import build_model
from xmrlib.models.common import RNNTextEncoder

from test_a3vse import make_batch as a3vse_batch
from test_a3vse import make_model as a3vse_model
from test_mmca import fake_store, random_tokens
from test_models_vse import make_batch, tiny_vocab

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def _dual(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, vocab=tiny_vocab().to_dict(), img_dim=6, embed_size=16,
                       word_dim=5, **kw)


def _scan(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    member = dict(vocab=tiny_vocab().to_dict(), img_dim=6, embed_size=16, word_dim=5)
    if name == "scan_ensemble":
        return build_model(name, members=[member, {**member, "attention": "i2t"}])
    return build_model(name, **member)


def _mmca(terms: str) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = build_model("mmca", img_dim=6, embed_size=16, heads=4, dropout=0.0, terms=terms)
    tokens, lengths = random_tokens(6, [5, 7, 4, 6, 3, 7])
    tf.register_store(fake_store(tokens, lengths))
    g = torch.Generator().manual_seed(1)
    batch = {"images": torch.randn(6, 3, 6, generator=g), "n_regions": torch.tensor([3, 2] * 3),
             "tokens": tokens, "lengths": lengths}
    return model, batch


def _case(name: str) -> tuple[torch.nn.Module, dict]:
    if name in ("vse", "vsepp"):
        return _dual(name), make_batch(6, seed=3)
    if name in ("scan", "summax", "scan_ensemble"):
        return _scan(name), make_batch(6, seed=3)
    if name.startswith("mmca"):
        return _mmca(name.split("-")[1])
    model = a3vse_model()
    return model, a3vse_batch(model)


def _spy_losses(monkeypatch, name: str) -> list:
    """Patch ``hinge_triplet_loss`` where the model calls it; returns the scores it receives."""
    import importlib

    from xmrlib import losses as losses_mod

    seen, real = [], losses_mod.hinge_triplet_loss

    def spy(scores, *a, **k):
        seen.append(scores.detach())
        return real(scores, *a, **k)

    module = {"vse": "vse", "vsepp": "vse", "a3vse": "a3vse", "scan": "scan", "summax": "scan",
              "scan_ensemble": "scan"}.get(name)
    target = importlib.import_module(f"xmrlib.models.{module}") if module else losses_mod
    monkeypatch.setattr(target, "hinge_triplet_loss", spy)  # MMCA imports it in loss()
    return seen


def _spy_references(monkeypatch, model: torch.nn.Module, name: str) -> list:
    """For every scoring call, the float32 scores of the same embeddings (autocast off)."""
    refs = []
    if name.startswith("mmca"):
        # S = i0 . c0 + alpha i1 . c1: the cross unit may run in bfloat16 (it is the model), the
        # dot products of what it returns must not
        real_sim, real_cross, cross = model.similarity, model.cross_embeddings, []

        def cross_spy(*a):
            i1, c1 = real_cross(*a)
            cross.append((i1.detach().float() * c1.detach().float()).sum(-1))
            return i1, c1

        def mmca_spy(img, cap, *a, **k):
            cross.clear()
            out = real_sim(img, cap, *a, **k)
            with torch.autocast("cpu", enabled=False):
                ref = img[:, 0].detach().float() @ cap[:, 0].detach().float().T
            if cross:  # one chunk of pairs (i, j), row-major
                ref = ref + model.alpha * torch.cat(cross).view_as(ref)
            refs.append(ref)
            return out

        monkeypatch.setattr(model, "cross_embeddings", cross_spy)
        monkeypatch.setattr(model, "similarity", mmca_spy)
        return refs
    for member in (model.members if name == "scan_ensemble" else [model]):
        def spy(img, cap, *a, _real=member.similarity, **k):
            with torch.autocast("cpu", enabled=False):
                refs.append(_real(img.detach().float(), cap.detach().float(), *a, **k))
            return _real(img, cap, *a, **k)

        monkeypatch.setattr(member, "similarity", spy)
    return refs


MODELS = ["vse", "vsepp", "a3vse", "mmca-self", "mmca-both", "scan", "summax", "scan_ensemble"]


@pytest.mark.parametrize("name", MODELS)
def test_scores_reaching_the_loss_are_float32_under_bf16_autocast(name, monkeypatch):
    model, batch = _case(name)
    model.train()
    seen = _spy_losses(monkeypatch, name)
    refs = _spy_references(monkeypatch, model, name)
    with torch.autocast(**BF16):
        loss, _ = model.loss(batch, 1.0)
    loss.backward()
    assert seen and len(seen) == len(refs), (len(seen), len(refs))
    for scores, ref in zip(seen, refs):
        assert scores.dtype == torch.float32, f"{name}: the loss saw {scores.dtype} scores"
        err = float((scores - ref).abs().max())
        assert err <= 2e-6, (f"{name}: scores differ by {err:.1e} from the float32 scores of "
                             "the same embeddings (bfloat16 arithmetic)")


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_runs_outside_autocast_in_float32(rnn, bidirectional):
    torch.manual_seed(0)
    enc = RNNTextEncoder(20, 5, 8, rnn=rnn, bidirectional=bidirectional)
    seen = {}

    def pre(module, args):
        packed = args[0]
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        seen["input"] = packed.data.dtype

    def post(module, args, out):
        seen["output"] = out[0].data.dtype

    enc.rnn.register_forward_pre_hook(pre)
    enc.rnn.register_forward_hook(post)
    tokens = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    with torch.autocast(**BF16):
        words, sentence = enc(tokens, torch.tensor([4, 2]))
    assert seen == {"autocast": False, "input": torch.float32, "output": torch.float32}
    assert words.dtype == sentence.dtype == torch.float32
    with torch.autocast("cpu", enabled=False):
        ref_words, ref_sentence = enc(tokens, torch.tensor([4, 2]))
    assert torch.equal(words, ref_words) and torch.equal(sentence, ref_sentence)


def test_cpu_autocast_would_run_an_lstm_in_bfloat16():
    """Why the guard matters even on the CPU: autocast recasts an LSTM over a padded tensor."""
    lstm = torch.nn.LSTM(4, 6, batch_first=True)
    with torch.autocast(**BF16):
        out, _ = lstm(torch.randn(2, 3, 4))
    assert out.dtype == torch.bfloat16

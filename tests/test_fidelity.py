"""Training fidelity: our training steps against the official VSE++ and SCAN code.

The same initial weights and the same batches of EfficientNet-lite0 (``features="cnn"``)
Shapes features, non-negative and sparse like bottom-up-attention features, go through
:func:`xmrlib.train.fit` and through the plain ports of ``fartashf/vsepp`` and
``kuanghuei/SCAN`` in ``tests/official_ports.py``. In float64 the per-step losses agree to
1e-7 relative (our ``l2norm`` adds 1e-8 to the norm, vsepp's adds nothing; SCAN's agree to
1e-14) and so do the weights after the steps; a change to an encoder, a normalisation, the loss,
the clipping or the optimiser shows up here (checked by breaking each). In float32 they agree only
to about 1e-5 and drift apart over the steps: Adam divides tiny gradients by tiny second moments
(a 1e-12 rounding difference in a gradient of 1e-9 moves a weight by up to lr / 2) and the
hardest negative switches between near-tied scores, so a float32 comparison of many steps tests
rounding, not code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from official_ports import (OfficialStep, ScanImagePrecomp, ScanText, VseppImagePrecomp,
                            VseppText)
from xmrlib.data import load_precomp, make_loader, make_shapes
from xmrlib.models import build_model
from xmrlib.models.common import masked_mean
from xmrlib.train import TrainConfig, fit
from xmrlib.vocab import Vocabulary

STEPS, BATCH, LR = 4, 10, 2e-4


@pytest.fixture(scope="module")
def cnn_train(tmp_path_factory):
    """Train split of a tiny Shapes set with EfficientNet-lite0 region features."""
    root = make_shapes(tmp_path_factory.mktemp("cnn"), 12, 2, 2, features="cnn", device="cpu")
    data = load_precomp(root, "train")
    feats = np.asarray(data.images)
    assert (feats >= 0).all() and (feats == 0).mean() > 0.5  # ReLU-like, mostly zeros
    return data


def _batches(data, tokenizer) -> list[dict]:
    """The first STEPS batches of the book's loader, features in float64."""
    out = []
    for batch in make_loader(data, tokenizer, BATCH, seed=0):
        batch["images"] = batch["images"].double()
        out.append(batch)
    return out[:STEPS]


def _port(model, kind: str, **flags) -> OfficialStep:
    """The official step, its weights copied from ``model`` (same initial weights)."""
    fc, embed = model.img_enc.fc, model.txt_enc.embed
    if kind == "vsepp":
        img = VseppImagePrecomp(fc.in_features, fc.out_features, flags.get("no_imgnorm", False))
        txt = VseppText(embed.num_embeddings, embed.embedding_dim, fc.out_features)
    else:
        img = ScanImagePrecomp(fc.in_features, fc.out_features)
        txt = ScanText(embed.num_embeddings, embed.embedding_dim, fc.out_features)
    img.fc.load_state_dict(fc.state_dict())
    txt.embed.load_state_dict(embed.state_dict())
    txt.rnn.load_state_dict(model.txt_enc.rnn.state_dict())
    return OfficialStep(kind, img.double(), txt.double(), LR,
                        max_violation=flags.get("max_violation", True))


def _compare(model, kind: str, data, tmp_path, **flags) -> None:
    model.double()
    port = _port(model, kind, **flags)
    batches = _batches(data, model.tokenize)
    cfg = TrainConfig(epochs=1, lr=LR, lr_update=None, batch_size=BATCH)  # grad_clip 2
    ours = fit(model, batches, None, cfg, tmp_path / "run", resume=False, device="cpu",
               progress=False).history["steps"]
    official = []
    for b in batches:
        images = masked_mean(b["images"], b["n_regions"]) if kind == "vsepp" else b["images"]
        official.append(port.step(images, b["tokens"], b["lengths"], b["n_regions"]))
    assert len(ours) == STEPS
    for k, (a, o) in enumerate(zip(ours, official)):
        assert a["loss"] == pytest.approx(o["loss"], rel=1e-7), f"step {k + 1}"
    assert official[0]["grad_norm"] > 2.0  # the clipping was active, so it is compared too
    pairs = [(model.img_enc.fc, port.img_enc.fc), (model.txt_enc.embed, port.txt_enc.embed),
             (model.txt_enc.rnn, port.txt_enc.rnn)]
    for ours_mod, port_mod in pairs:
        for (name, p), q in zip(ours_mod.named_parameters(), port_mod.parameters()):
            assert torch.allclose(p, q, rtol=0, atol=1e-9), f"{name} after {STEPS} steps"


def _vocab(data) -> dict:
    return Vocabulary.build(data.captions).to_dict()


@pytest.mark.parametrize("flags", [{"max_violation": True, "image_norm": True},
                                   {"max_violation": False, "image_norm": False}],
                         ids=["vsepp", "vse0"])
def test_vsepp_training_steps_equal_the_official_code(cnn_train, tmp_path, flags):
    torch.manual_seed(0)
    model = build_model("vsepp", vocab=_vocab(cnn_train), img_dim=cnn_train.images.shape[-1],
                        embed_size=24, word_dim=12, **flags)
    _compare(model, "vsepp", cnn_train, tmp_path, max_violation=flags["max_violation"],
             no_imgnorm=not flags["image_norm"])


def test_scan_training_steps_equal_the_official_code(cnn_train, tmp_path):
    torch.manual_seed(0)
    model = build_model("scan", vocab=_vocab(cnn_train), img_dim=cnn_train.images.shape[-1],
                        embed_size=24, word_dim=12)  # t2i LSE, clipped_l2norm, bi-GRU, MV
    _compare(model, "scan", cnn_train, tmp_path)

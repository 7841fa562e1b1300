"""Training loop: resume equality, run folder, bf16 autocast on CPU, reuse, learning on Shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xmrlib.data import first_images, load_precomp, make_loader, make_shapes
from xmrlib.evaluation import evaluate, random_ranking_expectation
from xmrlib.models import build_model
from xmrlib.models.vsepp import VSEPP
from xmrlib.checkpoint import load_history, load_run
from xmrlib.runs import data_identity, fit_or_load, run_dir_for
from xmrlib.train import TrainConfig, _autocast, fit
from xmrlib.vocab import Vocabulary

from test_models_vse import make_batch, tiny_vocab


class _Batches(torch.utils.data.Dataset):
    """Captions 0..n-1 of a synthetic split; the collate builds a batch dict."""

    def __init__(self, n: int) -> None:
        self.full = make_batch(n, seed=7)

    def __len__(self) -> int:
        return len(self.full["lengths"])

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: list[int]) -> dict:
        return {k: v[idx] for k, v in self.full.items()}


def _shuffled_loader(n: int = 48, batch_size: int = 8) -> torch.utils.data.DataLoader:
    data = _Batches(n)
    gen = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen,
                                       collate_fn=data.collate)


def _model(**kw) -> VSEPP:
    torch.manual_seed(0)
    return VSEPP(tiny_vocab().to_dict(), img_dim=6, embed_size=8, word_dim=5, **kw)


CFG = TrainConfig(epochs=3, lr=1e-2, lr_update=2, batch_size=8, ckpt_every_steps=4, amp="off")


def _last_weights(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint_last.pt", weights_only=False)["model"]


def test_resume_equals_uninterrupted_run(tmp_path):
    # 6 steps per epoch, 18 in all, checkpoints at epoch ends and 4 steps into an epoch.
    # Killed at step 9 (resumes from the epoch-end checkpoint of step 6), then at step 11
    # (resumes from the mid-epoch checkpoint of step 10).
    full = fit(_model(warmup=0.3), _shuffled_loader(), None, CFG, tmp_path / "a", progress=False)
    for stop in (9, 5, None):
        part = fit(_model(warmup=0.3), _shuffled_loader(), None, CFG, tmp_path / "b",
                   progress=False, max_steps=stop)
    assert len(part.history["steps"]) == 18
    a, b = _last_weights(tmp_path / "a"), _last_weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.history == part.history == load_history(tmp_path / "b")
    losses = [row["loss"] for row in full.history["steps"]]
    assert len(set(losses)) == 18  # every step saw a different batch or weights
    mv = [row["max_violation"] for row in full.history["steps"]]
    assert mv[:6] == [0.0] * 6 and mv[6:] == [1.0] * 12  # warm-up: first 30% with the sum
    assert [row["lr"] for row in full.history["epochs"]] == [1e-2, 1e-2, 1e-3]


def test_interrupted_run_differs_until_resumed(tmp_path):
    fit(_model(), _shuffled_loader(), None, CFG, tmp_path / "a", progress=False)
    fit(_model(), _shuffled_loader(), None, CFG, tmp_path / "b", progress=False, max_steps=9)
    a, b = _last_weights(tmp_path / "a"), _last_weights(tmp_path / "b")
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "b" / "done.json").exists()


def test_run_folder_contents(tmp_path):
    fit(_model(), _shuffled_loader(), None, CFG, tmp_path, progress=False)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "history.json", "history_steps.csv", "history_epochs.csv",
            "checkpoint_last.pt", "model_best.pt", "done.json"} <= names
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["name"] == "vsepp" and config["train"]["epochs"] == 3
    steps_csv = (tmp_path / "history_steps.csv").read_text().splitlines()
    assert steps_csv[0].startswith("step,epoch,loss,lr") and len(steps_csv) == 19
    rebuilt = load_run(tmp_path, device="cpu")
    best = torch.load(tmp_path / "model_best.pt", weights_only=False)["model"]
    assert all(torch.equal(rebuilt.state_dict()[k], best[k]) for k in best)
    with pytest.raises(ValueError, match="different configuration"):
        fit(_model(), _shuffled_loader(), None, TrainConfig(epochs=4), tmp_path, progress=False)


def test_bf16_autocast_step_on_cpu_is_close_to_fp32():
    batch = make_batch(16, seed=5)
    losses = {}
    for amp in ("off", "bf16"):
        model = _model()
        cfg = TrainConfig(amp=amp)
        with _autocast(cfg, torch.device("cpu")):
            loss, _ = model.loss(batch, 0.5)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        losses[amp] = loss.item()
    assert np.isfinite(losses["bf16"])
    assert abs(losses["bf16"] - losses["off"]) < 0.05 * abs(losses["off"]) + 1e-3
    with pytest.raises(ValueError, match="amp"):
        _autocast(TrainConfig(amp="fp8"), torch.device("cpu"))


# --------------------------------------------------------------------------- Shapes

@pytest.fixture(scope="module")
def learn_shapes(tmp_path_factory):
    """A small Shapes set in the real precomp layout (400 train, 100 dev, 20 test images)."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, n_train=400, n_dev=100, n_test=20, seed=0)
    return root


def _vocab_dict(data) -> dict:
    return Vocabulary.build(data.captions).to_dict()


@pytest.mark.slow
def test_vsepp_learns_on_shapes(learn_shapes, tmp_path):
    """VSE++ (half the run warmed up with the sum loss) beats random ranking by a wide margin on
    the 100 dev images. Measured: rsum 192 vs 32 by chance, t2i R@1 6.4 vs 1.0 (seed 0, 8
    epochs, ~3 s); without the warm-up max violation is still on its plateau (rsum 101)."""
    train, dev = load_precomp(learn_shapes, "train"), load_precomp(learn_shapes, "dev")
    torch.manual_seed(0)
    model = VSEPP(_vocab_dict(train), img_dim=train.images.shape[-1], embed_size=64, word_dim=32,
                  warmup=0.5)
    loader = make_loader(train, model.tokenize, 32, shuffle=True, seed=0)
    cfg = TrainConfig(epochs=8, lr=2e-3, lr_update=None, batch_size=32, amp="off")
    result = fit(model, loader, None, cfg, tmp_path, progress=False)
    metrics = evaluate(result.model, dev, protocol="1k", device="cpu")
    chance = random_ranking_expectation(len(dev.images))
    assert metrics["rsum"] > chance["rsum"] + 100, (metrics, chance)
    assert metrics["t2i_r1"] > 3 * chance["t2i_r1"], (metrics, chance)


def test_fit_or_load_reuses_the_run(learn_shapes, tmp_path):
    train = load_precomp(learn_shapes, "train")
    config = dict(vocab=_vocab_dict(train), img_dim=int(train.images.shape[-1]), embed_size=16,
                  word_dim=8)
    cfg = TrainConfig(epochs=1, batch_size=64, amp="off")
    first = fit_or_load("vsepp", config, train, None, cfg, device="cpu", progress=False,
                        root=tmp_path)
    stamp = (first.run_dir / "model_best.pt").stat().st_mtime_ns
    second = fit_or_load("vsepp", config, train, None, cfg, device="cpu", progress=False,
                         root=tmp_path)
    assert second.run_dir == first.run_dir == run_dir_for("vsepp", first.model.config, cfg,
                                                          data_identity(train), tmp_path)
    assert (second.run_dir / "model_best.pt").stat().st_mtime_ns == stamp
    assert second.history == first.history
    other = run_dir_for("vsepp", {**first.model.config, "embed_size": 32}, cfg,
                        data_identity(train), tmp_path)
    assert other != first.run_dir
    dev = load_precomp(learn_shapes, "dev")
    third = fit_or_load("vsepp", config, train, dev, cfg, device="cpu", progress=False,
                        root=tmp_path)  # model selection on a dev set: another run
    assert third.run_dir not in (first.run_dir, other)


def test_fit_or_load_notes_each_run_it_trains_or_reloads(learn_shapes, tmp_path, monkeypatch):
    """The chapter runner's log (XMR_RUN_LOG): trained, then reloaded with its training seconds
    (from the run folder's config.json to done.json) and the owner chapter it was asked for."""
    log = tmp_path / "runs_used.jsonl"
    monkeypatch.setenv("XMR_RUN_LOG", str(log))
    train = load_precomp(learn_shapes, "train")
    config = dict(vocab=_vocab_dict(train), img_dim=int(train.images.shape[-1]), embed_size=8,
                  word_dim=4)
    cfg = TrainConfig(epochs=1, batch_size=64, amp="off")
    args = ("vsepp", config, train, None, cfg)
    run = fit_or_load(*args, device="cpu", progress=False, root=tmp_path).run_dir
    fit_or_load(*args, device="cpu", progress=False, root=tmp_path, owner="03")
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert first == {"run": run.name, "owner": None, "reloaded": False, "seconds": None}
    took = (run / "done.json").stat().st_mtime - (run / "config.json").stat().st_mtime
    assert second == {"run": run.name, "owner": "03", "reloaded": True,
                      "seconds": round(took, 1)}


def test_full_profile_hyperparameters_run_on_real_format(learn_shapes, tmp_path):
    """The papers' sizes (embed 1024, word 300, batch 128, margin 0.2) on data in the real
    precomp layout: a few steps run, and the run folder rebuilds the same model."""
    train = load_precomp(learn_shapes, "train")
    torch.manual_seed(0)
    model = build_model("vsepp", vocab=_vocab_dict(train), img_dim=int(train.images.shape[-1]))
    assert model.config["embed_size"] == 1024 and model.config["word_dim"] == 300
    cfg = TrainConfig()  # VSE++: 30 epochs, lr 2e-4, x0.1 at 15, batch 128, clip 2
    loader = make_loader(train, model.tokenize, cfg.batch_size, shuffle=True, seed=0)
    part = fit(model, loader, None, cfg, tmp_path, device="cpu", progress=False, max_steps=3)
    assert len(part.history["steps"]) == 3
    assert all(np.isfinite(row["loss"]) for row in part.history["steps"])


def test_eval_every_scores_dev_only_on_its_epochs_and_changes_no_weight(learn_shapes, tmp_path):
    """``eval_every=2`` of 3 epochs evaluates after epochs 2 and 3 only and keeps the better of
    the two; evaluating changes no weight (the last weights equal those of a run that evaluates
    after every epoch), and each evaluated epoch scores as in that run."""
    train, dev = load_precomp(learn_shapes, "train"), first_images(load_precomp(learn_shapes,
                                                                                "dev"), 40)

    def run(every: int, name: str):
        torch.manual_seed(0)
        model = VSEPP(_vocab_dict(train), img_dim=train.images.shape[-1], embed_size=16,
                      word_dim=8)
        loader = make_loader(train, model.tokenize, 64, shuffle=True, seed=0)
        cfg = TrainConfig(epochs=3, lr=2e-3, batch_size=64, amp="off", eval_every=every)
        return fit(model, loader, dev, cfg, tmp_path / name, progress=False)

    each, sparse = run(1, "each"), run(2, "sparse")
    a, b = _last_weights(tmp_path / "each"), _last_weights(tmp_path / "sparse")
    assert all(torch.equal(a[k], b[k]) for k in a)
    scored = [row.get("rsum") for row in sparse.history["epochs"]]
    reference = [row["rsum"] for row in each.history["epochs"]]
    assert scored[0] is None and scored[1:] == reference[1:]
    best = 2 if reference[1] > reference[2] else 3  # the first of equal scores is kept
    assert sparse.best_epoch == best
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(eval_every=0)

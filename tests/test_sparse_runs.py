"""Chapter 06's experiments (xmrlib.sparse_runs): the paper's optimiser settings on ``full``,
seeded initialisation and the runs of other seeds."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xmrlib.data import load_precomp
from xmrlib.data.sparse import sparse_split
from xmrlib.runs import chapter_train_config
from xmrlib.sparse_runs import fit_sparse

from test_a3vse import _sparse_runs

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_a3vse.ipynb"
SMALL = dict(embed_size=8, word_dim=8, disc_hidden=8, max_violation=False)


def _split(shapes_root):
    return sparse_split(load_precomp(shapes_root, "train"), 0.5, 5, seed=0)


@pytest.mark.parametrize("dataset", ["f30k_precomp", "coco_precomp"])
def test_a3vse_optimiser_on_full_gets_the_papers_weight_decay(dataset, shapes_root, tmp_path,
                                                              monkeypatch):
    """A3VSE Sec. 4.3: weight decay 1e-6, gradients clipped at 2. The TrainConfig the chapter
    builds for ``full`` carries them, and the Adam that trains A3VSE receives the decay."""
    cfg = chapter_train_config("06", "full", dataset=dataset, epochs=1, batch_size=8)
    assert (cfg.weight_decay, cfg.grad_clip, cfg.lr) == (1e-6, 2.0, 5e-4)
    seen = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            seen.append(kwargs)
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    fit_sparse("a3vse", SMALL, _split(shapes_root), None, cfg, "regional", steps_per_epoch=1,
               device="cpu", root=tmp_path)
    assert [kw.get("weight_decay") for kw in seen] == [1e-6]


def test_chapter_06_takes_its_train_config_from_the_profile():
    """The chapter builds its TrainConfig with chapter_train_config("06", ..., dataset=dataset)
    (so ``full`` gets the paper's weight decay), never by hand."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and getattr(node.func, "id", getattr(node.func, "attr", "")) in
             ("chapter_train_config", "TrainConfig")]
    names = [getattr(c.func, "id", getattr(c.func, "attr", "")) for c in calls]
    assert "TrainConfig" not in names and "chapter_train_config" in names
    for call in calls:
        assert ast.literal_eval(call.args[0]) == "06"
        assert any(k.arg == "dataset" and getattr(k.value, "id", "") == "dataset"
                   for k in call.keywords)


def test_fit_sparse_initialisation_does_not_depend_on_the_global_rng(shapes_root, tmp_path):
    """Two fits of the same run, after different global RNG draws, give the same weights."""
    cfg = chapter_train_config("06", "smoke", epochs=1, batch_size=8)
    models = []
    for i, noise in enumerate((1, 7)):
        torch.manual_seed(noise)
        models.append(fit_sparse("vsepp", dict(embed_size=8, word_dim=8), _split(shapes_root),
                                 None, cfg, None, steps_per_epoch=1, device="cpu",
                                 root=tmp_path / str(i)).model.state_dict())
    assert models[0].keys() == models[1].keys()
    for name, weight in models[0].items():
        torch.testing.assert_close(weight, models[1][name], msg=name)


def test_with_seed_draws_another_split_and_training_seed(shapes_root):
    runs = _sparse_runs(shapes_root)
    other = runs.with_seed(1)
    assert runs.with_seed(runs.seed) is runs and runs.with_seed(1) is other
    assert (other.seed, other.cfg.seed, runs.cfg.seed) == (1, 1, 0)
    assert not np.array_equal(other.split(0.5, 1).annotated, runs.split(0.5, 1).annotated)
    assert other.a3vse_config == runs.a3vse_config and other.dev is runs.dev

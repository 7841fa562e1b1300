"""Profiles: one base plus deltas, with each paper's values per data set in ``full``."""

import pytest

from xmrlib import config
from xmrlib.config import (BASE, DATASET_DELTAS, PAPER_DATASET_DELTAS, PROFILE_DELTAS,
                           chapter_config)


def test_scan_full_takes_each_datasets_paper_values():
    """kuanghuei/SCAN README: COCO 5e-4, 20 epochs, x0.1 at 10, i-t LSE lambda 20; F30K 2e-4,
    30, 15, lambda 5 (SCAN Table 1)."""
    coco = chapter_config("04", "full", dataset="coco_precomp")
    f30k = chapter_config("04", "full", dataset="f30k_precomp")
    assert (coco["lr"], coco["epochs"], coco["lr_update"], coco["lambda_lse_i2t"]) == \
        (5e-4, 20, 10, 20.0)
    assert (f30k["lr"], f30k["epochs"], f30k["lr_update"], f30k["lambda_lse_i2t"]) == \
        (2e-4, 30, 15, 5.0)
    for c in (coco, f30k):        # shared by both data sets
        assert (c["lambda_softmax_t2i"], c["lambda_softmax_i2t"], c["lambda_lse_t2i"],
                c["warmup"], c["embed_size"], c["batch_size"]) == (9.0, 4.0, 6.0, 0.0, 1024, 128)
    assert chapter_config("04", "full") == {**f30k, "dataset": "shapes"}  # Shapes: F30K's


def test_a3vse_full_has_weight_decay_on_both_datasets():
    for dataset in ("f30k_precomp", "coco_precomp"):
        c = chapter_config("06", "full", dataset=dataset)
        assert (c["weight_decay"], c["lr"], c["lr_update"], c["epochs"]) == (1e-6, 5e-4, 16, 24)
    assert chapter_config("06", "default")["weight_decay"] == 0.0


def test_coco_protocols_in_every_profile():
    for profile in config.PROFILE_NAMES:
        c = chapter_config("03", profile, dataset="coco_precomp")
        assert (c["protocol"], c["test_split"], c["paper_protocols"]) == \
            ("5fold1k", "testall", ["5fold1k", "5k"])
        assert c["dev_protocol"] == "1k"
        f = chapter_config("03", profile, dataset="f30k_precomp")
        assert (f["protocol"], f["test_split"], f["paper_protocols"]) == ("1k", "test", ["1k"])


def test_vsepp_full_is_the_paper_recipe():
    c = chapter_config("03", "full", dataset="coco_precomp")
    assert (c["epochs"], c["lr"], c["lr_update"], c["margin"], c["batch_size"]) == \
        (30, 2e-4, 15, 0.2, 128)
    assert c["vocab_min_count"] == 4 and chapter_config("03", "smoke")["vocab_min_count"] == 1


def test_no_delta_repeats_the_value_below_it():
    """Each value is written once: a delta entry equal to what it overrides is dead weight."""
    for profile, delta in PROFILE_DELTAS.items():
        for part, values in delta.items():
            for k, v in values.items():
                assert k in BASE[part], f"{profile}/{part}/{k}: not in the base"
                assert BASE[part][k] != v, f"{profile}/{part}/{k} repeats the base value {v!r}"
    for dataset, delta in PAPER_DATASET_DELTAS.items():
        for part, values in delta.items():
            below = config.profile_values("full", "shapes", part)
            assert all(below[k] != v for k, v in values.items()), (dataset, part)
    for dataset, delta in DATASET_DELTAS.items():
        for part, values in delta.items():
            below = config.profile_values("default", "shapes", part)
            if part != "common":
                below.update(DATASET_DELTAS[dataset].get("common", {}))
            assert all(below[k] != v for k, v in values.items()), (dataset, part)


def test_backward_compatible_calls_and_errors():
    c = chapter_config("05", "smoke", dataset="shapes", data_root=None, device="cpu", seed=3,
                       epochs=7)
    assert (c["epochs"], c["seed"], c["device"], c["dataset"]) == (7, 3, "cpu", "shapes")
    assert chapter_config("02", "default", lr=None)["lr"] == 2e-3        # None = profile value
    assert config.COMMON["smoke"]["n_train"] == 300 and config.COMMON["full"]["n_train"] is None
    with pytest.raises(ValueError, match="unknown dataset 'f30k'"):
        chapter_config("02", "full", dataset="f30k")
    with pytest.raises(ValueError, match="unknown parameter 'lambda' for chapter 04"):
        chapter_config("04", "full", **{"lambda": 3})
    with pytest.raises(ValueError, match="unknown chapter '09'"):
        chapter_config("09", "full")


@pytest.mark.parametrize("name,value,match", [
    ("epochs", "abc", r"-p epochs 'abc': expected an integer as chapter 03's profiles use"),
    ("epochs", 1.5, r"-p epochs 1.5: expected an integer"),
    ("lr", "fast", r"-p lr 'fast': expected a number"),
    ("sweep_batch_sizes", 32, r"-p sweep_batch_sizes 32: expected a list .*\[32\]"),
    ("sweep_batch_sizes", [32, "x"], r"expected a list"),
    ("epochs", True, r"expected an integer"),
])
def test_override_types_are_checked(name, value, match):
    with pytest.raises(ValueError, match=match):
        config.check_override("03", name, value)


def test_override_types_accept_what_the_profiles_use():
    for name, value in [("epochs", 3), ("lr", 1), ("lr", 1e-3), ("sweep_batch_sizes", [16, 64]),
                        ("epochs", None), ("lr_update", 2)]:
        config.check_override("03", name, value)
    config.check_override("05", "ablations", False)
    config.check_override("06", "table2_settings", [[0.2, 1], [0.5, 5]])
    with pytest.raises(ValueError, match="true or false"):
        config.check_override("05", "ablations", 1)


def test_chapter_05_orders_its_runs_over_three_seeds():
    """Chapter 05 states orderings of alpha, sizes and modules only with their spread over seeds
    (issue 16): the default profile repeats every run for 3 seeds and papermill can set it."""
    import json

    from xmrlib.utils import repo_root

    assert chapter_config("05", "default")["n_seeds"] >= 3
    assert chapter_config("05", "smoke")["n_seeds"] == 1
    nb = json.loads((repo_root() / "notebooks" / "05_mmca.ipynb").read_text())
    params = ["".join(c["source"]) for c in nb["cells"]
              if "parameters" in c["metadata"].get("tags", [])]
    assert any(line.startswith("n_seeds = None") for line in params[0].splitlines())


def test_chapter_04_orders_its_scan_variants_over_three_seeds():
    """Chapter 04 states orderings of its SCAN variants only with their spread over seeds: the
    default profile trains each variant for 3 seeds, smoke and full for one, and papermill can set
    n_seeds through the parameters cell."""
    import json

    from xmrlib.utils import repo_root

    assert chapter_config("04", "default")["n_seeds"] >= 3
    assert chapter_config("04", "smoke")["n_seeds"] == 1
    assert chapter_config("04", "default", n_seeds=2)["n_seeds"] == 2
    nb = json.loads((repo_root() / "notebooks" / "04_scan.ipynb").read_text())
    params = ["".join(c["source"]) for c in nb["cells"]
              if "parameters" in c["metadata"].get("tags", [])]
    assert any(line.startswith("n_seeds = None") for line in params[0].splitlines())
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "n_seeds=n_seeds" in code  # passed on to chapter_config

"""The package layout: names that moved in the module split still import from their old path
(the design card's public names, the chapters' imports) and are the new home's objects."""

import ast
import importlib
from pathlib import Path

import pytest

#: old path -> new home, for every name that moved in the module split and is still imported
#: from its old path (design card public names, chapter notebooks)
MOVED = {
    "xmrlib.models.scan": {"xattn_scores": "xmrlib.models.scan_kernel"},
    "xmrlib.reproduce": {n: "xmrlib.results" for n in ("save_table", "save_metrics", "load_table",
                                                        "results_dir", "ReproduceError")},
    "xmrlib.train": {n: "xmrlib.runs" for n in ("fit_or_load", "fit_chapter_model",
                                                 "chapter_train_config", "chapter_model_config",
                                                 "data_identity", "run_dir_for")},
    "xmrlib.viz": {**{n: "xmrlib.evaluation.ranking" for n in ("retrieval_ranks",
                                                               "topk_for_caption",
                                                               "topk_for_image")},
                   **{n: "xmrlib.tables" for n in ("results_table", "style_results",
                                                   "DEFAULT_COLUMNS", "mean_sd_table")}},
    "xmrlib.models.a3vse": {**{n: "xmrlib.sparse_runs" for n in (
        "ABLATIONS", "KIND_LABELS", "SparseRuns", "embed_domains", "paper_row_id",
        "sg_baseline_similarity", "fit_sparse")},
        "rsum_per_image": "xmrlib.evaluation.bootstrap"},
    "xmrlib.evaluation": {"recall_metrics": "xmrlib.evaluation.recall",
                          "evaluate": "xmrlib.evaluation.scoring",
                          "ranks": "xmrlib.evaluation.ranking"},
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_give_the_new_homes_objects(old):
    module = importlib.import_module(old)
    for name, home in MOVED[old].items():
        assert getattr(module, name) is getattr(importlib.import_module(home), name), name


def test_unknown_names_still_raise():
    import xmrlib.models.a3vse as a3vse
    import xmrlib.train as train

    for module in (train, a3vse):
        with pytest.raises(AttributeError, match="no_such_name"):
            module.no_such_name  # noqa: B018


def test_every_module_has_a_docstring():
    """Every module opens with a docstring whose first line says what the module is for."""
    root = Path(__file__).resolve().parents[1] / "xmrlib"
    for path in sorted(root.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and doc.splitlines()[0].strip(), f"{path.relative_to(root)}: no docstring"

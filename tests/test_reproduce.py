"""Tests of the papermill batch runner, the results API and the report (xmrlib.reproduce)."""

import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from xmrlib import book, provenance, report, results
from xmrlib import reproduce as rp

@pytest.fixture
def tree(chapter_tree):
    """A notebooks folder with a good chapter 01 and a failing chapter 02; tmp build/results."""
    nbs = chapter_tree.notebooks
    chapter_tree.chapter("01_good.ipynb", [
        "import os\nimport pandas as pd\nfrom xmrlib.reproduce import save_table, save_metrics",
        "save_table(pd.DataFrame({'x': [scale * 2], 'omp': [os.environ['OMP_NUM_THREADS']]}),"
        " 'tab', chapter='01', profile=profile, dataset=dataset)\n"
        "save_metrics({'i2t_r1': 0.5}, 'm', chapter='01', profile=profile, dataset=dataset)"])
    chapter_tree.chapter("02_bad.ipynb", ["x = 1", "y = 1 / 0  # boom\nz = 2"])
    (nbs / "README.ipynb").write_text("{}")  # not a chapter: ignored
    return chapter_tree.root, nbs


def _run(nbs, *extra):
    return rp.main(["run", "--profile", "smoke", "--dataset", "shapes", "--device", "cpu",
                    "--notebooks-dir", str(nbs), *extra])


@pytest.mark.slow
def test_run_provenance_failure_skip_and_force(tree, capsys):
    tmp, nbs = tree
    assert _run(nbs, "-p", "scale", "3") == 1  # chapter 02 fails, 01 still runs
    err = capsys.readouterr().err
    assert "chapter 02 failed in cell 3" in err and "y = 1 / 0" in err
    assert "ZeroDivisionError" in err
    out = tmp / "results" / "smoke" / "shapes"
    table = pd.read_csv(out / "01" / "tab.csv")
    assert table["x"].tolist() == [6] and table["omp"].tolist() == [1]
    assert pd.read_csv(out / "01" / "m.csv")["i2t_r1"].tolist() == [0.5]
    info = json.loads((out / "01" / "run.json").read_text())
    for key in ("git", "parameters", "seed", "packages", "device", "start", "end", "wall_s",
                "data", "notebook_sha256", "executed_notebook"):
        assert key in info, key
    assert info["status"] == "complete" and info["device"] == "cpu"
    assert info["executed_notebook"] == "notebooks/smoke/shapes/" + info["notebook"]
    assert info["parameters"] == {"profile": "smoke", "dataset": "shapes", "data_root": None,
                                  "device": "cpu", "scale": 3, "seed": 0}
    assert set(info["git"]) == {"commit", "dirty"} and info["packages"]["pandas"]
    assert info["files"] == ["m.csv", "tab.csv"] and info["wall_s"] > 0
    assert not (out / "02" / "run.json").exists()
    failed = json.loads((tmp / "build" / "failed" / "smoke" / "shapes" / "02.json").read_text())
    assert failed["status"] == "failed" and "ZeroDivisionError" in failed["error"]
    executed = nbformat.read(tmp / "build" / "notebooks" / "smoke" / "shapes" / "01_good.ipynb", 4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

    # same parameters: 01 is skipped; different parameters or --force: it runs again
    outcomes = rp.run_chapters("smoke", "shapes", device="cpu", chapters=["01"],
                               params={"scale": 3}, nb_dir=nbs, log=lambda m: None)
    assert [o.status for o in outcomes] == ["skipped"]
    outcomes = rp.run_chapters("smoke", "shapes", device="cpu", chapters=["01"],
                               params={"scale": 3}, force=True, nb_dir=nbs, log=lambda m: None)
    assert [o.status for o in outcomes] == ["complete"]
    outcomes = rp.run_chapters("smoke", "shapes", device="cpu", chapters=["01"],
                               params={"scale": 4}, nb_dir=nbs, log=lambda m: None)
    assert [o.status for o in outcomes] == ["complete"]
    assert pd.read_csv(out / "01" / "tab.csv")["x"].tolist() == [8]


def test_bad_arguments_give_clear_errors(tree, capsys):
    tmp, nbs = tree
    assert _run(nbs, "--chapters", "07") == 2
    assert "unknown chapter(s) 07" in capsys.readouterr().err
    assert _run(nbs, "-p", "scael", "3") == 2
    assert "unknown parameter 'scael'" in capsys.readouterr().err
    assert rp.main(["run", "--profile", "huge", "--notebooks-dir", str(nbs)]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
    assert rp.main(["run", "--profile", "full", "--dataset", "f30k_precomp",
                    "--notebooks-dir", str(nbs)]) == 2
    assert "needs --data-root" in capsys.readouterr().err
    assert rp.main(["run", "--profile", "full", "--dataset", "f30k_precomp", "--data-root",
                    str(tmp / "nowhere"), "--notebooks-dir", str(nbs)]) == 2
    assert "holds precomp files" in capsys.readouterr().err
    assert rp.main(["evaluate", "--run-dir", str(tmp), "--dataset", "shapes"]) == 2
    assert "no model_best.pt" in capsys.readouterr().err
    (tmp / "model_best.pt").write_bytes(b"")
    assert rp.main(["evaluate", "--run-dir", str(tmp), "--dataset", "coco_precomp"]) == 2
    assert "needs --data-root" in capsys.readouterr().err


def test_real_data_provenance(tmp_path):
    folder = tmp_path / "f30k_precomp"
    folder.mkdir()
    np.save(folder / "test_ims.npy", np.zeros((2, 36, 2048), dtype=np.float32))
    (folder / "test_caps.txt").write_text("a\n" * 10)
    assert rp.resolve_data_root("f30k_precomp", tmp_path) == folder
    assert provenance.data_provenance("f30k_precomp", folder)["features"] == "BUTD 36x2048"
    assert provenance.features_label((1000, 4096)) == "VGG"
    assert rp.parse_value("3") == 3 and rp.parse_value("None") is None
    assert rp.parse_value("0.5") == 0.5 and rp.parse_value("LSE") == "LSE"


def _fake_run(root, dataset, chapter, rows, features, protocol="1k"):
    folder = root / "full" / dataset / chapter
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "t.csv", index=False)
    (folder / "run.json").write_text(json.dumps({
        "chapter": chapter, "dataset": dataset, "profile": "full", "seed": 0,
        "parameters": {"protocol": protocol}, "data": {"features": features}}))


def test_report_delta_only_when_setting_matches(tmp_path, monkeypatch):
    monkeypatch.setenv("XMR_RESULTS_DIR", str(tmp_path))
    row = "scan2018/table_1/1k/scan_t_i_avg_lambda1_9"
    _fake_run(tmp_path, "f30k_precomp", "04",
              [{"paper_row": row, "label": "ours", "i2t_r1": 60.0, "t2i_r1": 45.0}], "BUTD 36x2048")
    _fake_run(tmp_path, "shapes", "01",
              [{"paper_row": "kiros2014/table_2/1k/random_ranking", "i2t_r1": 0.5}], "Shapes")
    md, csv, df = report.write_report()
    assert md.exists() and csv.exists()
    real = df[df["chapter"] == "04"].set_index("metric")
    assert real.loc["i2t_r1", "delta"] == pytest.approx(60.0 - 61.8)
    assert real.loc["t2i_r1", "delta"] == pytest.approx(45.0 - 45.8)
    shapes = df[df["chapter"] == "01"]
    assert len(shapes) == 1 and pd.isna(shapes["delta"].iloc[0])
    assert shapes["paper_value"].iloc[0] == 0.1 and shapes["our_value"].iloc[0] == 0.5
    assert "numbers not comparable (Shapes vs Flickr30K)" in md.read_text()


def test_save_table_rejects_bad_names(tmp_path, monkeypatch):
    monkeypatch.setenv("XMR_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="result name"):
        results.save_table(pd.DataFrame({"a": [1]}), "../x", chapter="01", profile="smoke",
                      dataset="shapes")
    path = results.save_table(pd.DataFrame({"a": [1]}), "ok", chapter="01", profile="smoke",
                         dataset="shapes")
    assert path == tmp_path / "smoke" / "shapes" / "01" / "ok.csv"
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.slow
def test_chapter_overview_reads_run_json_and_counts_exercises(tree, monkeypatch):
    tmp, nbs = tree
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 3. Three\n```{exercise}\n:label: a\n```"),
                nbformat.v4.new_markdown_cell("```{exercise}\n:label: b\n```"),
                nbformat.v4.new_code_cell("check_lse_pooling(f)\ncheck_max_violation(g)\n"
                                          "check_lse_pooling(h)")]
    nbformat.write(nb, nbs / "03_three.ipynb")
    _run(nbs, "--chapters", "01")
    monkeypatch.setenv("XMR_NOTEBOOKS_DIR", str(nbs))
    df = book.chapter_overview("smoke", "shapes").set_index("chapter")
    wall = json.loads((tmp / "results" / "smoke" / "shapes" / "01" / "run.json").read_text())
    assert df.loc["01", "minutes"] == round(wall["wall_s"] / 60, 1)
    assert df.loc["01", "device"] == "cpu" and df.loc["01", "exercises"] == 0
    assert np.isnan(df.loc["02", "minutes"]) and np.isnan(df.loc["03", "minutes"])  # not run
    assert df.loc["03", "title"] == "3. Three" and df.loc["03", "exercises"] == 2
    assert df.loc["03", "checkers"] == "check_lse_pooling, check_max_violation"
    md = book.overview_markdown(df.reset_index(), "smoke", "shapes")
    assert "| 3. Three | not run | - | 2 | `check_lse_pooling`, `check_max_violation` |" in md

"""The paper-vs-run report: only our rows are runs, paper values come from xmrlib.papers."""

import json
import subprocess

import pandas as pd
import pytest

from xmrlib import report as rp
from xmrlib.papers import paper_row, paper_rows
from xmrlib.results import ReproduceError
from xmrlib.utils import repo_root

ROOT = repo_root()
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def _run(root, rows, dataset="shapes", chapter="04", profile="default", features="Shapes",
         protocol="1k", name="t"):
    folder = root / profile / dataset / chapter
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)
    (folder / "run.json").write_text(json.dumps({
        "chapter": chapter, "dataset": dataset, "profile": profile, "seed": 0,
        "parameters": {"protocol": protocol}, "data": {"features": features}}))


def _paper(row_id, **extra):
    """A paper row as a chapter saves it (source paper, the paper's values and id)."""
    p = paper_row(row_id)
    return {"source": "paper", "label": f"paper: {p['paper_name']}, {p['dataset']}, {p['table']}",
            "method": p["method"], "paper_row": row_id, **{m: p[m] for m in (*RECALLS, "rsum")},
            **extra}


def _ours(method, values, paper_row_id="", **extra):
    return {"source": "ours", "label": "ours: full, f30k_precomp, seed 0", "method": method,
            "paper_row": paper_row_id, **dict(zip((*RECALLS, "rsum"), values)), **extra}


SCAN_T1 = "scan2018/table_1/1k/"
T_I_AVG, I_T_AVG = SCAN_T1 + "scan_t_i_avg_lambda1_9", SCAN_T1 + "scan_i_t_avg_lambda1_4"


def test_real_data_paper_rows_are_never_runs(tmp_path):
    # A chapter table on real features holds the paper's rows (source paper, with their ids)
    # and ours. Read as runs, the paper rows would compare the paper with itself: "+0.00".
    ours_vals = (60.0, 85.0, 92.0, 44.0, 72.0, 81.0, 434.0)
    _run(tmp_path, [_paper(T_I_AVG), _paper(I_T_AVG), _ours("SCAN t2i AVG", ours_vals, T_I_AVG)],
         dataset="f30k_precomp", profile="full", features="BUTD 36x2048")
    md, csv, df = rp.write_report(tmp_path)
    assert set(df["run"]) == {"SCAN t2i AVG"} and len(df) == 7
    p = paper_row(T_I_AVG)
    got = df.set_index("metric")
    for m, v in zip((*RECALLS, "rsum"), ours_vals):
        assert got.loc[m, "our_value"] == v and got.loc[m, "paper_value"] == p[m]
        assert got.loc[m, "delta"] == pytest.approx(v - p[m])
    assert (df["delta"] != 0).all()
    text = md.read_text()
    assert "+0.0 " not in text and "| +0.0 |" not in text
    assert f"| {434.0 - p['rsum']:+.1f} |" in text  # the comparable row's rsum difference


def test_shapes_rows_get_no_difference_and_labelled_blocks(tmp_path):
    _run(tmp_path, [_paper(T_I_AVG), _ours("SCAN t2i AVG", (30, 70, 90, 10, 30, 45, 275),
                                           T_I_AVG)])
    md, csv, df = rp.write_report(tmp_path)
    assert df["delta"].isna().all()
    text = md.read_text()
    assert "difference" not in text.split("## SCAN Table 1")[1]  # no delta column on Shapes
    assert "numbers not comparable (Shapes vs Flickr30K)" in text
    assert "| paper | SCAN t-i AVG (lambda1=9) | Flickr30K 1k, BUTD 36x2048 |" in text
    assert "| ours | SCAN t2i AVG | Shapes 1k, Shapes, seed 0 |" in text


def _ordering_case(tmp_path, ours_t_i, ours_i_t, sd=None, n=1):
    extra = {} if sd is None else {"rsum_sd": sd, "n_seeds": n}
    rows = [_paper(T_I_AVG), _paper(I_T_AVG),
            _ours("t2i AVG", (*[ours_t_i / 6] * 6, ours_t_i), T_I_AVG, **extra),
            _ours("i2t AVG", (*[ours_i_t / 6] * 6, ours_i_t), I_T_AVG, **extra)]
    _run(tmp_path, rows)
    [block] = rp.collect_blocks(tmp_path)
    return rp.ordering_verdict(block)


def test_ordering_verdict_follows_the_paper(tmp_path):
    # the paper: i-t AVG (452.2) ahead of t-i AVG (446.2)
    assert paper_row(I_T_AVG)["rsum"] > paper_row(T_I_AVG)["rsum"]
    v = _ordering_case(tmp_path / "a", 100.0, 120.0)
    assert v == "ordering reproduced: 1 of 1 pairs agree by rsum; one seed"
    v = _ordering_case(tmp_path / "b", 120.0, 100.0)
    assert v.startswith("ordering reversed: 0 of 1 pairs agree")
    # three seeds: 20 points apart with sd 1 is separable, with sd 30 it is not
    assert "1 of 1 differences separable" in _ordering_case(tmp_path / "c", 100.0, 120.0, 1.0, 3)
    assert "0 of 1 differences separable" in _ordering_case(tmp_path / "d", 100.0, 120.0, 30.0, 3)


def test_a_paper_row_saved_as_ours_is_refused(tmp_path):
    copy = _paper(T_I_AVG)
    copy["source"] = "ours"
    _run(tmp_path, [copy])
    with pytest.raises(ReproduceError, match="holds exactly the recalls of paper row"):
        rp.write_report(tmp_path)


def test_older_tables_resolve_by_label_and_renamed_ids(tmp_path):
    # results_table frames saved before paper rows carried ids (chapter 05), and a renamed id
    p = paper_rows("mmca2020", "Table 6").iloc[1]  # alpha = 0.2
    legacy = {"source": "paper", "label": "paper: MMCA, Flickr30K, Table 6", "method": p["method"],
              **{m: p[m] for m in RECALLS}}
    _run(tmp_path, [legacy, _ours(p["method"], (20, 60, 80, 20, 50, 70, 300)),
                    _ours("MMCA alpha=0", (10, 30, 50, 10, 30, 45, 175))], chapter="05")
    _run(tmp_path, [_ours("VSE0", (3, 15, 24, 3, 11, 17, 73),
                          "vsepp2018/table_2/5fold1k/2_1_vse0_1c_1_fold")], chapter="03")
    blocks = {b.chapter: b for b in rp.collect_blocks(tmp_path)}
    assert [o.counterpart for o in blocks["05"].ours] == [p["row_id"], None]
    assert blocks["03"].ours[0].counterpart == "vsepp2018/table_2/1k/2_1_vse0_1c_1_fold"
    bad = dict(legacy, method="MMCA alpha=7")
    _run(tmp_path, [bad], chapter="06", name="bad")
    with pytest.raises(ReproduceError, match="bad.csv: paper row .*MMCA alpha=7"):
        rp.collect_blocks(tmp_path)


def test_committed_report_is_what_the_code_builds(tmp_path):
    # results/report.md and report.csv are rebuilt from the committed CSVs, byte for byte
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    for path in tracked:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes((ROOT / path).read_bytes())
    md, csv, _ = rp.write_report(tmp_path / "results", out=tmp_path)
    assert md.read_text() == (ROOT / "results" / "report.md").read_text()
    assert csv.read_text() == (ROOT / "results" / "report.csv").read_text()


def test_committed_report_never_shows_a_paper_value_as_ours():
    df = rp.build_report(ROOT / "results", rp.REPORTED_PROFILES)
    assert not df.empty
    # every run is a row of ours in its chapter table (source 'ours', or a table without source)
    for (chapter, table), runs in df.groupby(["chapter", "table"]):
        saved = pd.read_csv(next((ROOT / "results").glob(f"*/*/{chapter}/{table}.csv")))
        if "source" in saved:
            assert not saved.loc[saved["source"] == "paper", "label"].isin(runs["run"]).any()
            assert (saved["source"] == "paper").any() or (saved["source"] == "ours").any()
        assert not runs["run"].str.startswith("paper:").any(), (chapter, table)
    # and no row of ours equals its paper counterpart on every recall it has
    for (run, row), g in df[df["paper_row"] != ""].groupby(["run", "paper_row"]):
        rec = g[g["metric"].isin(RECALLS)].dropna(subset=["paper_value"])
        assert not (rec["our_value"].round(1) == rec["paper_value"]).all(), (run, row)
    assert {"02", "03", "04", "05", "06"} <= set(df["chapter"])
    assert (df["run"].str.strip() != "").all()


def test_ordering_uses_the_recalls_every_paired_row_has(tmp_path):
    # MMCA Table 1 prints VSE++ (ResNet) with R@5 in the R@10 column: the shared recalls are
    # i2t R@1, i2t R@5, t2i R@1 and t2i R@10, and the verdict names them
    t1 = paper_rows("mmca2020", "Table 1").set_index("method")["row_id"]
    _run(tmp_path, [_ours("VSE++", (5, 20, 30, 2, 8, 14, 79), t1["VSE++ (ResNet)"]),
                    _ours("MMCA", (30, 75, 95, 25, 65, 79, 369), t1["MMCA"])], chapter="05")
    [block] = rp.collect_blocks(tmp_path)
    assert rp.ordering_verdict(block) == (
        "ordering reproduced: 1 of 1 pairs agree by i2t R@1 + i2t R@5 + t2i R@1 + t2i R@10 "
        "(the recalls given for every paired row); one seed")


def test_shapes_setting_names_the_test_size_of_the_profile(tmp_path):
    # "1k" is the whole test split: 1000 images on default, 100 on smoke
    row = _ours("SCAN t2i AVG", (30, 70, 90, 10, 30, 45, 275), T_I_AVG)
    _run(tmp_path / "a", [row], profile="smoke")
    _run(tmp_path / "b", [row])
    _run(tmp_path / "c", [dict(row, protocol="first 200 test images")])
    assert rp.collect_blocks(tmp_path / "a")[0].ours[0].protocol == "100 test images"
    assert rp.collect_blocks(tmp_path / "b")[0].ours[0].protocol == "1k"
    assert rp.collect_blocks(tmp_path / "c")[0].ours[0].protocol == "first 200 test images"

"""Tests of xmrlib.tables: labelled paper and run rows, mean ± sd over seeds."""

import numpy as np
import pandas as pd
import pytest

from xmrlib import tables


def test_results_table_labels_and_never_mixes():
    paper = pd.DataFrame([{"paper_name": "VSE++", "dataset": "MS-COCO", "table": "Table 2",
                           "method": "VSE0", "i2t_r1": 43.2, "t2i_r1": 33.0}])
    ours = {"VSE0": {"i2t_r1": 10.0, "t2i_r1": 8.0},
            "VSE++": [{"i2t_r1": 12.0, "t2i_r1": 9.0}, {"i2t_r1": 14.0, "t2i_r1": 11.0},
                      {"i2t_r1": 16.0, "t2i_r1": 13.0}]}
    with pytest.raises(ValueError, match="seed"):
        tables.results_table(ours, paper, columns=["i2t_r1", "t2i_r1"], profile="default",
                          dataset="shapes", seed=0)
    one = tables.results_table({"VSE0": ours["VSE0"]}, paper, columns=["i2t_r1", "t2i_r1"],
                            profile="default", dataset="shapes", seed=3)
    assert list(one["source"]) == ["paper", "ours"]
    assert one.loc[0, "label"] == "paper: VSE++, MS-COCO, Table 2"
    assert one.loc[0, "i2t_r1"] == 43.2
    assert one.loc[1, "label"] == "ours: default, shapes, seed 3"
    assert one.loc[1, "i2t_r1"] == 10.0 and np.isnan(one.loc[1, "i2t_r1_sd"])

    multi = tables.results_table({"VSE++": ours["VSE++"]}, None, columns=["i2t_r1", "t2i_r1"],
                              profile="default", dataset="shapes", seed=[0, 1, 2])
    row = multi.iloc[0]
    assert row["label"] == "ours: default, shapes, seeds 0, 1, 2 (mean ± sd)"
    assert row["i2t_r1"] == pytest.approx(14.0)
    assert row["i2t_r1_sd"] == pytest.approx(2.0)  # sample sd of 12, 14, 16
    assert row["n_seeds"] == 3
    # a method run on fewer seeds than the table's (a sweep on one seed): the first seeds
    mixed = tables.results_table({"VSE++": ours["VSE++"], "VSE0": [ours["VSE0"]]}, None,
                                 columns=["i2t_r1"], profile="default", dataset="shapes",
                                 seed=[0, 1, 2])
    assert list(mixed["label"]) == ["ours: default, shapes, seeds 0, 1, 2 (mean ± sd)",
                                    "ours: default, shapes, seed 0"]
    assert list(mixed["n_seeds"]) == [3, 1]
    html = tables.style_results(pd.concat([one, multi], ignore_index=True)).to_html()
    assert "14.0 ± 2.0" in html and "43.2" in html and "i2t_r1_sd" not in html


def test_results_table_rejects_bad_paper_frame():
    with pytest.raises(ValueError, match="paper_name"):
        tables.results_table({}, pd.DataFrame([{"method": "x"}]), profile="p", dataset="d")


def test_mean_sd_table():
    t = tables.mean_sd_table([{"rsum": 100.0, "r1": 1.0}, {"rsum": 110.0, "r1": 3.0}])
    assert t.loc["rsum", "mean"] == 105.0
    assert t.loc["r1", "sd"] == pytest.approx(np.sqrt(2.0))
    assert t.loc["rsum", "n"] == 2


def test_results_table_names_paper_rows_and_counterparts():
    from xmrlib.papers import paper_table

    paper = paper_table("mmca2020/Table 1")
    ours = {"VSE++": {"i2t_r1": 5.0}, "MMCA": {"i2t_r1": 30.0}, "extra": {"i2t_r1": 1.0}}
    t = tables.results_table(ours, paper, columns=["i2t_r1"], profile="default",
                             dataset="shapes", seed=0, protocol="200 test images",
                             counterparts={"VSE++": "VSE++ (ResNet)", "MMCA": "MMCA"})
    assert list(t["paper_row"]) == [*paper["row_id"], "mmca2020/table_1/1k/vsepp_resnet",
                                    "mmca2020/table_1/1k/mmca", ""]
    assert list(t["protocol"]) == ["1k"] * 3 + ["200 test images"] * 3
    with pytest.raises(ValueError, match="counterparts"):
        tables.results_table(ours, paper, columns=["i2t_r1"], profile="default",
                             dataset="shapes", counterparts={"VSE++": "VSE++"})


def test_style_results_writes_each_source_once_with_readable_headers():
    ours = {"A": {"i2t_r1": 10.0, "t2i_medr": 3.0}, "B": {"i2t_r1": 12.0, "t2i_medr": 2.0}}
    paper = pd.DataFrame([{"paper_name": "P", "dataset": "D", "table": "Table 1", "method": m,
                           "i2t_r1": v, "t2i_medr": np.nan} for m, v in (("A", 40.0), ("B", 41.0))])
    t = tables.results_table(ours, paper, columns=["i2t_r1", "t2i_medr"], profile="default",
                             dataset="shapes", seed=0)
    html = tables.style_results(t).to_html()
    assert html.count("ours: default, shapes, seed 0") == 1  # once per block, not per row
    assert html.count("paper: P, D, Table 1") == 1
    assert "i→t R@1" in html and "t→i med r" in html and "i2t_r1" not in html
    only = tables.style_results(t, columns=["i2t_r1"]).to_html()
    assert "med r" not in only and "41.0" in only
    assert tables.column_title("t2i_r10") == "t→i R@10" and tables.column_title("rsum") == "rsum"


def test_mean_sd_text():
    runs = [{"rsum": 100.0, "binding_acc": 0.5}, {"rsum": 110.0, "binding_acc": 0.7}]
    assert tables.mean_sd(runs) == "105.0 ± 7.1"                   # sd of 100, 110: 7.07
    assert tables.mean_sd(runs, "binding_acc", 100) == "60.0 ± 14.1"
    assert tables.mean_sd(runs[:1]) == "100.0"
    assert tables.mean_sd([{"rsum": 1.0}], "binding_acc") == "nan"

"""Checks of the transcribed paper numbers (xmrlib.papers)."""

import math

import pytest

from xmrlib.papers import METRIC_COLUMNS, PAPERS, paper_row, paper_rows, paper_table

SOURCE_FIELDS = ("row_id", "paper", "citation", "table", "dataset", "protocol", "features", "method",
                 "source")
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def test_every_row_has_its_source_fields():
    df = paper_rows()
    assert df["row_id"].is_unique
    for _, row in df.iterrows():
        for name in SOURCE_FIELDS:
            assert isinstance(row[name], str) and row[name].strip(), (row["row_id"], name)
        assert row["paper"] in PAPERS
        assert row["protocol"] in ("1k", "5fold1k", "5k"), row["row_id"]
        assert row["dataset"] in ("Flickr8K", "Flickr30K", "MS-COCO"), row["row_id"]


def test_values_in_range_and_rsum_consistent():
    inconsistent = []
    for _, row in paper_rows().iterrows():
        for k in RECALLS:
            v = row[k]
            assert math.isnan(v) or 0.0 <= v <= 100.0, (row["row_id"], k, v)
        for k in ("i2t_medr", "t2i_medr"):
            assert math.isnan(row[k]) or row[k] >= 1.0, (row["row_id"], k)
        # R@1 <= R@5 <= R@10 within a direction (where given)
        for d in ("i2t", "t2i"):
            given = [row[f"{d}_r{k}"] for k in (1, 5, 10) if not math.isnan(row[f"{d}_r{k}"])]
            assert given == sorted(given), (row["row_id"], d, given)
        parts = [row[k] for k in RECALLS]
        if not any(math.isnan(p) for p in parts):
            total = 0.0
            for p in parts:
                total += p
            if abs(total - row["rsum"]) > 0.05:
                inconsistent.append(row["row_id"])
        else:
            assert math.isnan(row["rsum"]), row["row_id"]
    assert not inconsistent, f"rsum inconsistent with its parts: {inconsistent}"


def test_hand_checked_rows():
    rr = paper_row("kiros2014/table_2/1k/random_ranking")
    assert (rr["i2t_r1"], rr["i2t_r10"], rr["i2t_medr"]) == (0.1, 1.1, 631.0)
    assert (rr["t2i_r1"], rr["t2i_r10"], rr["t2i_medr"]) == (0.1, 1.0, 500.0)
    # A3VSE tables list text-to-image first: check the mapping on the full model of Table 2
    a3 = paper_row("a3vse2019/table_2/1k/a3vse_100_ann_145_000_pairs")
    assert (a3["t2i_r1"], a3["i2t_r1"]) == (49.5, 65.0)
    scan = paper_rows("scan2018", "Table 1")
    best = scan[scan["method"] == "SCAN t-i AVG + i-t LSE"].iloc[0]
    assert (best["i2t_r1"], best["t2i_r10"], best["features"]) == (67.4, 85.2, "BUTD 36x2048")


def test_paper_only_rows_and_disagreements_are_flagged():
    vsepp = paper_rows("vsepp2018")
    assert (~vsepp["reproducible"]).sum() == 10  # everything but the two one-centre-crop rows
    notes = " ".join(paper_rows()["note"])
    assert "lambda1=10" in notes and "72.8" in notes and "23,200" in notes


def test_paper_table_and_errors():
    t = paper_table("mmca2020/Table 6")
    assert list(t["method"]) == [f"MMCA alpha={a}" for a in ("0.1", "0.2", "0.4", "0.8")]
    assert "i2t_medr" not in t.columns and set(RECALLS) <= set(t.columns)
    with pytest.raises(ValueError, match="unknown paper"):
        paper_rows("nope")
    with pytest.raises(ValueError, match="expected '<paper>/<table>'"):
        paper_table("kiros2014")
    with pytest.raises(KeyError, match="no paper row"):
        paper_row("kiros2014/x")
    assert set(METRIC_COLUMNS) <= set(paper_rows().columns)


def test_one_fold_rows_are_labelled_one_fold():
    # VSE++ prints rows 2.1 and 1.6 as "1C (1 fold)": one fold of 1000 COCO test images, not the
    # mean over five folds; the other rows of its Table 2 are five-fold means.
    vsepp = paper_rows("vsepp2018", "Table 2").set_index("method")
    for method, row in vsepp.iterrows():
        expected = "1k" if "(1 fold)" in method else "5fold1k"
        assert row["protocol"] == expected, method
    assert list(vsepp.index[:2]) == ["2.1 VSE0, 1C (1 fold)", "1.6 VSE++, 1C (1 fold)"]
    for old, new in (("vsepp2018/table_2/5fold1k/1_6_vsepp_1c_1_fold",
                      "vsepp2018/table_2/1k/1_6_vsepp_1c_1_fold"),
                     ("vsepp2018/table_2/5fold1k/2_1_vse0_1c_1_fold",
                      "vsepp2018/table_2/1k/2_1_vse0_1c_1_fold")):
        assert paper_row(old)["row_id"] == new  # results saved before the rename still resolve


def test_sources_name_the_printing_table_and_cited_paper():
    df = paper_rows()
    for _, row in df.iterrows():
        assert row["source"].startswith(f"{row['paper_name']} {row['table']}"), row["row_id"]
        assert "read from" in row["source"] and "seed 00" in row["source"], row["row_id"]
    # VSE++'s result reprinted by SCAN and MMCA is marked as a citation of VSE++
    cited = df[df["method"].str.startswith("VSE++ (") & df["paper"].isin(["scan2018", "mmca2020"])]
    assert len(cited) == 7 and cited["source"].str.contains("citing VSE++").all()
    own = df[df["paper"] == "vsepp2018"]
    assert not own["source"].str.contains("citing").any()
    # the survey's SCO reprint of VSE++ (ResNet, COCO 1K) differs from VSE++'s own Table 2 at R@5
    own_row = paper_row("vsepp2018/table_2/5fold1k/1_11_vsepp_resnet_ft_rc_rv")
    sco = paper_row("sco2018/table_4/5fold1k/vsepp_res")
    assert (own_row["i2t_r5"], own_row["t2i_r5"]) == (90.0, 84.3)
    assert (sco["i2t_r5"], sco["t2i_r5"]) == (89.1, 83.1)
    for k in ("i2t_r1", "i2t_r10", "t2i_r1", "t2i_r10"):
        assert own_row[k] == sco[k], k
    assert own_row["source"] != sco["source"] and sco["source"].startswith("SCO Table 4, citing VSE++")


def test_a3vse_pair_counts_follow_from_images_and_captions():
    # "P% img, k/5 sent, ..., N pairs": N = round(P% of the training images) x k, with 29,000
    # training images on Flickr30K and 113,287 on MS-COCO. A row whose printed count breaks the
    # arithmetic must say so in its note (A3VSE Table 1's 23,200).
    import re

    images = {"Flickr30K": 29000, "MS-COCO": 113287}
    checked, flagged = 0, []
    for _, row in paper_rows("a3vse2019").iterrows():
        m = re.search(r"(\d+)% img, (\d)/5 sent.*?([\d,]+) pairs", row["method"])
        if not m:
            continue
        pct, k, n = int(m[1]), int(m[2]), int(m[3].replace(",", ""))
        expected = round(pct / 100 * images[row["dataset"]]) * k
        checked += 1
        if abs(n - expected) > 5:  # 20% of COCO x 5 prints 113,287 for 113,285
            flagged.append(row["row_id"])
            assert f"is {expected:,} pairs" in row["note"], row["row_id"]
        assert "(as printed)" not in row["method"], row["row_id"]
    assert checked == 48
    assert flagged == ["a3vse2019/table_1/1k/a3vse_50_img_2_5_sent_20_ann_23_200_pairs",
                       "a3vse2019/table_1/1k/scan_50_img_2_5_sent_20_ann_23_200_pairs"]
    old = "a3vse2019/table_2/1k/a3vse_50_img_2_5_sent_29_000_pairs_as_printed"
    assert paper_row(old)["row_id"] == "a3vse2019/table_2/1k/a3vse_50_img_2_5_sent_29_000_pairs"

"""Every chapter on the format-exact Flickr30K and MS-COCO fixtures, smoke profile (CI).

The fixtures keep the protocol sizes (Flickr30K test 1000 images, COCO testall 5000), so the
dual-encoder chapters evaluate the real protocols; the cross-attention chapters cut the test split
to 100 images in smoke (labelled in the chapters). Both data sets take about two minutes on two
idle CPU cores (measured in the real-data guide).
"""

import json
import time

import pandas as pd
import pytest

from xmrlib import reproduce as rp


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # module-wide: the monkeypatch fixture is per test
        mp.setenv("XMR_RESULTS_DIR", str(tmp_path_factory.mktemp("real-results")))
        yield


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["f30k_precomp", "coco_precomp"])
def test_every_chapter_runs_on_real_format_data(real_root, results, dataset):
    t0 = time.perf_counter()
    outcomes = rp.run_chapters("smoke", dataset, data_root=real_root, device="cpu", force=True,
                               log=lambda m: None)
    wall = time.perf_counter() - t0
    print(f"{dataset}: {wall:.0f} s; " + ", ".join(f"{o.chapter} {o.wall_s:.0f} s"
                                                  for o in outcomes))
    assert [o.chapter for o in outcomes] == ["01", "02", "03", "04", "05", "06", "07"]
    assert all(o.status == "complete" for o in outcomes), [o.error for o in outcomes if o.error]
    for o in outcomes:
        info = json.loads((rp.results_dir("smoke", dataset, o.chapter) / "run.json").read_text())
        assert str(real_root) not in json.dumps(info) and info["data"]["source"] == dataset
    table2 = pd.read_csv(rp.results_dir("smoke", dataset, "03") / "table2.csv")
    ours = table2[table2["source"] == "ours"]
    expected = {"coco_precomp": {"5fold1k", "5k"}, "f30k_precomp": {"1k"}}[dataset]
    assert set(ours["protocol"]) == expected                   # the data set's protocols
    a3vse = pd.read_csv(rp.results_dir("smoke", dataset, "06") / "table2_baselines.csv")
    assert "s_g baseline" not in set(a3vse["model"])           # Shapes only

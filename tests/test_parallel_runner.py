"""Chapters executed in parallel (``run --jobs N``): each in its own process with its own
results, at the same time, and never training one run twice (file locks)."""

import json
import multiprocessing
import time

import nbformat
import pytest

from xmrlib import reproduce as rp
from xmrlib.utils import file_lock, lock_path

BODY = """import time
import pandas as pd
from xmrlib.results import save_table
t0 = time.time()
time.sleep(2.0)
save_table(pd.DataFrame({{"chapter": ["{c}"], "start": [t0], "end": [time.time()]}}), "t",
           chapter="{c}", profile=profile, dataset=dataset)
"""


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    monkeypatch.setenv("XMR_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("XMR_RESULTS_DIR", str(tmp_path / "results"))


def _chapters(folder, names, reloads=None):
    """Notebooks ``NN_fake.ipynb`` that sleep 2 s and save when they ran; ``reloads[NN]``: a
    comment naming another chapter's run, as a chapter that reloads it would."""
    folder.mkdir()
    for c in names:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell('profile = "smoke"\ndataset = "shapes"\n'
                                           'data_root = None\ndevice = "cpu"\nseed = 0')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(BODY.format(c=c))]
        if reloads and c in reloads:
            nb.cells.append(nbformat.v4.new_code_cell(f'# chapter_run("{reloads[c]}", "a run")'))
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, folder / f"{c}_fake.ipynb")
    return folder


def test_two_jobs_run_two_chapters_at_once_each_with_its_own_results(tmp_path, fresh_build):
    nbs = _chapters(tmp_path / "nbs", ["01", "02", "03"])
    outcomes = rp.run_chapters("smoke", "shapes", device="cpu", nb_dir=nbs, jobs=2)
    assert [(o.chapter, o.status) for o in outcomes] == [("01", "complete"), ("02", "complete"),
                                                         ("03", "complete")]
    spans = {}
    for c in ("01", "02", "03"):
        table = rp.load_table("t", chapter=c, profile="smoke", dataset="shapes")
        assert list(table["chapter"]) == [int(c)]            # its own table, not another's
        spans[c] = (float(table["start"][0]), float(table["end"][0]))
        info = json.loads((rp.results_dir("smoke", "shapes", c) / "run.json").read_text())
        assert info["status"] == "complete" and info["files"] == ["t.csv"]
    overlapping = [(a, b) for a in spans for b in spans if a < b
                   and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]
    assert overlapping, f"no two chapters ran at the same time: {spans}"
    # never more than two at once
    for c, (start, _) in spans.items():
        assert sum(s <= start < e for s, e in spans.values()) <= 2


def test_jobs_must_be_positive(tmp_path, fresh_build):
    nbs = _chapters(tmp_path / "nbs", ["01"])
    with pytest.raises(rp.ReproduceError, match="--jobs 0"):
        rp.run_chapters("smoke", "shapes", device="cpu", nb_dir=nbs, jobs=0)


def _add_one(path, counter):
    """Read a number, wait, write it plus one: two of these lose an update without a lock."""
    with file_lock(path):
        n = int(counter.read_text()) if counter.exists() else 0
        time.sleep(0.3)
        counter.write_text(str(n + 1))


def test_file_lock_serialises_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    lock, counter = tmp_path / ".x.lock", tmp_path / "n"
    procs = [ctx.Process(target=_add_one, args=(lock, counter)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert counter.read_text() == "3"


def test_fit_or_load_trains_under_the_run_lock(tmp_path, monkeypatch):
    """While a run trains, its lock is held: another process asking for it would wait."""
    import fcntl

    from xmrlib import runs
    from xmrlib.data import get_dataset, load_precomp

    monkeypatch.setenv("XMR_BUILD_DIR", str(tmp_path / "build"))
    seen = {}

    def fake_fit(model, loader, dev, cfg, run_dir, **kw):
        assert not list(run_dir.parent.glob(".*")), "a lock file among the run folders"
        with open(lock_path(run_dir.name), "a") as other:   # a second open file: flock treats it as another owner
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen["held"] = False
            except BlockingIOError:
                seen["held"] = True
        return "fit"

    monkeypatch.setattr(runs, "fit", fake_fit)
    root = get_dataset("shapes", profile="smoke")
    train, dev = load_precomp(root, "train"), load_precomp(root, "dev")
    cfg = runs.chapter_train_config("03", "smoke")
    config = runs.chapter_model_config("03", "smoke", train)
    assert runs.fit_or_load("vsepp", config, train, dev, cfg, device="cpu") == "fit"
    assert seen == {"held": True}


def test_reloaded_chapters_are_read_from_the_chapters_code():
    from xmrlib.chapters import discover_chapters, reloaded_chapters

    found = {c: reloaded_chapters(p) for c, p in discover_chapters().items()}
    assert found["07"] == {"02", "03", "04", "05"}  # the side-by-side table's rows
    assert found["04"] == {"03"}                    # chapter 03's VSE++ beside SCAN
    assert all(not found[c] for c in ("01", "02", "03", "05", "06"))


def _task(chapter, notebook):
    return rp.ChapterTask(chapter, notebook, {}, {}, "smoke", "shapes", False, "cpu", {}, {}, {})


def test_parallel_order_starts_the_longest_chain_of_work_first(tmp_path, fresh_build):
    """Walls 01: 50 s, 02: 100, 03: 10, 04: 30 (reloads 03's runs), 05: 20 (reloads 02's and
    04's). Chains: 05 = 20; 04 = 30 + 20; 03 = 10 + 50; 02 = 100 + 20; 01 = 50. So 02 (120)
    starts first, then 03 (60), 01 and 04 (50 each, chapter order) and 05, which reloads."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    reload_code = {"04": 'chapter_run("03", "VSE++")', "05": 'x = ("02", "a"), ("04", "b")'}
    tasks = []
    for c, wall in [("01", 50), ("02", 100), ("03", 10), ("04", 30), ("05", 20)]:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(reload_code.get(c, "pass"))]
        nbformat.write(nb, nbs / f"{c}_fake.ipynb")
        folder = rp.results_dir("smoke", "shapes", c)
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"wall_s": wall}))
        tasks.append(_task(c, nbs / f"{c}_fake.ipynb"))
    assert [t.chapter for t in rp.parallel_order(tasks)] == ["02", "03", "01", "04", "05"]
    # without chapter 05 in the run, the chains are the walls: 03 (10 + 30) starts after 01
    assert [t.chapter for t in rp.parallel_order(tasks[:4])] == ["02", "01", "03", "04"]


def test_a_chapter_that_reloads_starts_after_the_chapter_it_reloads(tmp_path, fresh_build):
    """02 reloads 01's runs: with two workers free, 03 starts beside 01, and 02 only when 01 has
    finished (it would otherwise wait on 01's run locks, or train 01's runs itself)."""
    nbs = _chapters(tmp_path / "nbs", ["01", "02", "03"], reloads={"02": "01"})
    outcomes = rp.run_chapters("smoke", "shapes", device="cpu", nb_dir=nbs, jobs=2)
    assert all(o.status == "complete" for o in outcomes)
    spans = {c: tuple(float(rp.load_table("t", chapter=c, profile="smoke", dataset="shapes")[k][0])
                      for k in ("start", "end")) for c in ("01", "02", "03")}
    assert spans["02"][0] >= spans["01"][1], spans
    assert spans["03"][0] < spans["01"][1], spans  # 03 ran beside 01, not after 02


def test_chapter_cost_adds_back_the_chapters_own_reloaded_runs(tmp_path):
    """A cached rerun of chapter 05: its wall time plus the training seconds of its own runs
    that it reloaded (10 + 20), once each; not chapter 03's run that it reloads by name (100 s),
    nor a run it trained itself and then reloaded (5 s)."""
    log = tmp_path / "runs_used.jsonl"
    entries = [{"run": "mmca-a", "owner": "05", "reloaded": True, "seconds": 10.0},
               {"run": "mmca-a", "owner": "05", "reloaded": True, "seconds": 10.0},
               {"run": "a3vse-b", "owner": None, "reloaded": True, "seconds": 20.0},
               {"run": "vsepp-c", "owner": "03", "reloaded": True, "seconds": 100.0},
               {"run": "scan-d", "owner": "05", "reloaded": False, "seconds": None},
               {"run": "scan-d", "owner": "05", "reloaded": True, "seconds": 5.0}]
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert rp.chapter_cost(60.0, log, "05") == 60.0 + 10.0 + 20.0
    assert rp.chapter_cost(60.0, tmp_path / "absent.jsonl", "05") == 60.0

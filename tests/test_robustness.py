"""Robustness: bad input to every CLI and loader gives a clear error; a killed run resumes.

Not repeated here: the precomp loader's malformed files (test_precomp.py) and the in-process
resume of ``fit`` (test_train.py). The CLI table lists the bad inputs of every entry point, so a
few of them (unknown chapter, parameter, profile of ``reproduce run``) also appear, called
differently, in test_reproduce.py.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xmrlib import reproduce as rp
from xmrlib import utils
from xmrlib.data import DataError, get_dataset, load_precomp
from xmrlib.checkpoint import load_run
from xmrlib.train import fit
from xmrlib.utils import atomic_write_text, resolve_device
from xmrlib.vocab import Vocabulary

from test_train import CFG, _model, _shuffled_loader

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- devices

def _fake_cuda(monkeypatch, available: bool, count: int = 0, built: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: built)


def test_explicit_missing_device_is_an_error(monkeypatch):
    _fake_cuda(monkeypatch, available=False)
    for name in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device(name)
    _fake_cuda(monkeypatch, available=True, count=1)
    with pytest.raises(ValueError, match=r"'cuda:3'.*has 1 GPU\(s\)"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    for bad in ("gpu", "cuda:x", "CPU"):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(bad)


def test_auto_falls_back_to_cpu_and_warns_only_when_a_gpu_was_expected(monkeypatch, recwarn):
    _fake_cuda(monkeypatch, available=True, count=1)
    assert resolve_device("auto") == torch.device("cuda")
    _fake_cuda(monkeypatch, available=False, built=False)   # CPU-only torch: nothing to say
    assert resolve_device("auto") == torch.device("cpu")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    _fake_cuda(monkeypatch, available=False, built=True)    # CUDA build, no usable GPU
    with pytest.warns(RuntimeWarning, match="no GPU is usable"):
        assert resolve_device("auto") == torch.device("cpu")


# --------------------------------------------------------------------------- loaders

def _precomp(root: Path, n: int = 4, n_caps: int | None = None, split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{split}_ims.npy", np.ones((n, 3, 2), np.float32))
    n_caps = 5 * n if n_caps is None else n_caps
    (root / f"{split}_caps.txt").write_text("".join(f"a red circle {i}\n" for i in range(n_caps)))
    return root


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("keep", [40, -8])   # cut inside the header / inside the data
def test_truncated_npy_both_read_modes(tmp_path, mmap, keep):
    root = _precomp(tmp_path / "t", split="train")
    raw = (root / "train_ims.npy").read_bytes()
    (root / "train_ims.npy").write_bytes(raw[:keep])
    with pytest.raises(DataError, match=r"train_ims.npy: not a readable .npy array"):
        load_precomp(root, "train", mmap=mmap)


def test_data_root_and_dataset_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="file is a file, not a folder"):
        load_precomp(tmp_path / "file", "train")
    root = _precomp(tmp_path / "m", split="train")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json: not valid JSON"):
        load_precomp(root, "train")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_dataset("shapes", profile="huge")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        get_dataset("imagenet", data_root=tmp_path)


@pytest.mark.parametrize("text,match", [
    (None, "no vocabulary file"),
    ("{itos", "not a vocabulary file.*Expecting"),
    ('{"words": []}', r"must be \{'itos'"),
    ('{"itos": ["a", "b"]}', "must start with"),
])
def test_vocabulary_load_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "vocab.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
        Vocabulary.load(path)
    assert "vocab.json" in str(info.value)


@pytest.mark.parametrize("content,match", [
    (b"", "not a readable checkpoint"),
    (b"PK\x03\x04 torn zip", "not a readable checkpoint"),
    (None, r"not a checkpoint of xmrlib.train.fit \(missing name, config, epoch, metrics\)"),
])
def test_load_run_torn_or_foreign_checkpoint(tmp_path, content, match):
    if content is None:   # a readable file that fit did not write
        torch.save({"model": {}}, tmp_path / "model_best.pt")
    else:
        (tmp_path / "model_best.pt").write_bytes(content)
    with pytest.raises(ValueError, match=f"model_best.pt: {match}"):
        load_run(tmp_path, device="cpu")


def test_resume_from_torn_checkpoint_names_it(tmp_path):
    (tmp_path / "checkpoint_last.pt").write_bytes(b"\x80\x02 half a pickle")
    with pytest.raises(ValueError, match="checkpoint_last.pt: not a readable checkpoint"):
        fit(_model(), _shuffled_loader(), None, CFG, tmp_path, resume=True, device="cpu",
            progress=False)


# --------------------------------------------------------------------------- CLIs

#: Cases run as real subprocesses (``python -m ...``): one or two per entry point; the others
#: call the same ``main(argv)`` in-process, which is much faster (no torch import each time).
SUBPROCESS = {"run: NAME=VALUE parameter", "run: truncated npy", "evaluate: caption count",
              "report: corrupt run.json", "book: unknown profile", "train: missing device",
              "classroom: corrupt notebook"}
CLI_CASES = ["run: unknown profile", "run: unknown dataset", "run: unknown chapter",
             "run: unknown parameter", "run: NAME=VALUE parameter", "run: malformed -p",
             "run: missing device", "run: wrong data_root", "run: truncated npy",
             "evaluate: caption count", "evaluate: torn checkpoint", "evaluate: missing device",
             "report: corrupt run.json", "book: unknown profile", "train: unknown profile",
             "train: unknown chapter", "train: wrong data_root", "train: missing device",
             "classroom: corrupt notebook", "classroom: output is a file"]


def _cli_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (module and arguments, text expected in stderr); builds their inputs in ``tmp``."""
    truncated = _precomp(tmp / "trunc" / "f30k_precomp")
    for split in ("train", "dev"):                 # the splits a run checks before it starts
        _precomp(truncated, split=split)
    raw = (truncated / "test_ims.npy").read_bytes()
    (truncated / "test_ims.npy").write_bytes(raw[:-8])
    _precomp(tmp / "mismatch" / "f30k_precomp", n_caps=15)
    _precomp(tmp / "good" / "f30k_precomp", n=1000)  # Flickr30K's 1K protocol: 1000 images
    (tmp / "run_empty").mkdir()
    (tmp / "run_empty" / "model_best.pt").write_bytes(b"")
    (tmp / "results" / "smoke" / "shapes" / "02").mkdir(parents=True)
    (tmp / "results" / "smoke" / "shapes" / "02" / "run.json").write_text("{")
    (tmp / "nbs").mkdir()
    (tmp / "nbs" / "01_x.ipynb").write_text("{bad")
    (tmp / "a_file").write_text("x")
    run = ["xmrlib.reproduce", "run", "--profile", "smoke", "--chapters", "02"]
    real = ["xmrlib.reproduce", "run", "--profile", "full", "--dataset", "f30k_precomp",
            "--chapters", "02", "--data-root"]
    ev = ["xmrlib.reproduce", "evaluate", "--dataset", "f30k_precomp", "--run-dir",
          str(tmp / "run_empty"), "--data-root"]
    return {
        "run: unknown profile": (["xmrlib.reproduce", "run", "--profile", "huge"],
                                 "unknown profile 'huge'"),
        "run: unknown dataset": (run + ["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        "run: unknown chapter": (run[:-1] + ["99"], "unknown chapter(s) 99"),
        "run: unknown parameter": (run + ["-p", "foo", "1"], "unknown parameter 'foo'"),
        "run: NAME=VALUE parameter": (run + ["-p", "foo=1"], "unknown parameter 'foo'"),
        "run: malformed -p": (run + ["-p", "a", "b", "c"], "expected -p NAME VALUE"),
        "run: missing device": (run + ["--device", "cuda:99"], "device='cuda:99' was asked for"),
        "run: wrong data_root": (real + [str(tmp / "nowhere")], "holds precomp files"),
        "run: truncated npy": (real + [str(tmp / "trunc")],
                               "test_ims.npy: not a readable .npy array"),
        "evaluate: caption count": (ev + [str(tmp / "mismatch")],
                                    "test_caps.txt: 15 captions for 4 images"),
        "evaluate: torn checkpoint": (ev + [str(tmp / "good")],
                                      "model_best.pt: not a readable checkpoint"),
        "evaluate: missing device": (ev + [str(tmp / "good"), "--device", "cuda:99"],
                                     "device='cuda:99' was asked for"),
        "report: corrupt run.json": (["xmrlib.reproduce", "report"], "run.json: not valid JSON"),
        "book: unknown profile": (["xmrlib.reproduce", "book", "--profile", "huge"],
                                  "unknown profile 'huge'"),
        "train: unknown profile": (["xmrlib.train", "--profile", "huge"],
                                   "unknown profile 'huge'"),
        "train: unknown chapter": (["xmrlib.train", "--chapter", "09"], "invalid choice: '09'"),
        "train: wrong data_root": (["xmrlib.train", "--dataset", "f30k_precomp", "--data-root",
                                    str(tmp / "nowhere")], "no f30k_precomp files"),
        "train: missing device": (["xmrlib.train", "--device", "cuda:99"],
                                  "device='cuda:99' was asked for"),
        "classroom: corrupt notebook": (["xmrlib.classroom", "student-edition", str(tmp / "out"),
                                         "--notebooks", str(tmp / "nbs")],
                                        "01_x.ipynb: not a readable notebook"),
        "classroom: output is a file": (["xmrlib.classroom", "student-edition",
                                         str(tmp / "a_file")], "exists and is not a folder"),
    }


@pytest.fixture(scope="module")
def cli(tmp_path_factory, tool_env):
    """The inputs folder, the cases, and the finished subprocess of every SUBPROCESS case
    (conftest's ``tool_env``: one thread, build and results folders under the inputs folder)."""
    tmp = tmp_path_factory.mktemp("cli")
    cases = _cli_cases(tmp)
    assert list(cases) == CLI_CASES and SUBPROCESS <= set(cases)

    def call(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *cases[name][0]], cwd=ROOT,
                              env={**os.environ, **tool_env(tmp)},
                              capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(sorted(SUBPROCESS), pool.map(call, sorted(SUBPROCESS))))
    return tmp, cases, done


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_bad_input_exits_2_with_a_clear_message(cli, name, monkeypatch, capsys, tool_env):
    tmp, cases, done = cli
    (module, *args), expected = cases[name]
    if name in SUBPROCESS:
        code, err = done[name].returncode, done[name].stderr
        assert "Traceback" not in err, err
    else:
        for key, value in tool_env(tmp).items():
            monkeypatch.setenv(key, value)
        try:
            code = importlib.import_module(module).main(args)
        except SystemExit as exc:   # argparse's own errors
            code = exc.code
        err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err


# --------------------------------------------------------------------------- atomic writes

def test_atomic_write_killed_before_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    atomic_write_text(path, "a,b\n1,2\n")

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(utils.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "a,b\n3,4\n" * 1000)
    assert path.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]   # no temp file left behind


@pytest.mark.slow
def test_publish_killed_midway_keeps_the_previous_results(chapter_tree, monkeypatch):
    """A kill while a re-run's results are swapped in (between the two renames of the publish)
    leaves the previous complete results aside; the next run restores them before it looks
    at them, so they are neither lost nor torn, and no hidden folder is left behind."""
    nbs = chapter_tree.notebooks
    chapter_tree.chapter("01_two.ipynb", [
        "import pandas as pd\nfrom xmrlib.reproduce import save_table\n"
        "for name in ('a', 'b'):\n"
        "    save_table(pd.DataFrame({'x': [scale]}), name, chapter='01', profile=profile,"
        " dataset=dataset)"])
    kw = dict(profile="smoke", dataset="shapes", device="cpu", chapters=["01"], nb_dir=nbs,
              log=lambda m: None)
    assert [o.status for o in rp.run_chapters(**kw, params={"scale": 2})] == ["complete"]
    final = chapter_tree.root / "results" / "smoke" / "shapes" / "01"
    real_replace = rp.os.replace

    def dies_between_renames(src, dst):
        if Path(src).name.startswith(".01.new-"):  # the second rename: new results -> final
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(rp.os, "replace", dies_between_renames)
    with pytest.raises(KeyboardInterrupt):
        rp.run_chapters(**kw, params={"scale": 3}, force=True)
    monkeypatch.setattr(rp.os, "replace", real_replace)
    assert not final.exists()  # the kill left the previous results aside, the new ones hidden
    [old] = final.parent.glob(".01.old-*")
    assert pd.read_csv(old / "b.csv")["x"].tolist() == [2]
    assert [o.status for o in rp.run_chapters(**kw, params={"scale": 2})] == ["skipped"]
    for name in ("a", "b"):
        assert pd.read_csv(final / f"{name}.csv")["x"].tolist() == [2]
    assert not list(final.parent.glob(".01.*"))
    assert [o.status for o in rp.run_chapters(**kw, params={"scale": 3})] == ["complete"]
    assert pd.read_csv(final / "b.csv")["x"].tolist() == [3]


# --------------------------------------------------------------------------- killed chapter

#: Three epochs instead of smoke's two, so that the kill (as soon as the first epoch's checkpoint
#: appears) lands inside training even on a busy machine.
RUN_02 = [sys.executable, "-m", "xmrlib.reproduce", "run", "--profile", "smoke", "--chapters",
          "02", "--device", "cpu", "-p", "epochs", "3"]


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (children, grandchildren ...), from /proc."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the runner and everything it started (the kernel lives in its own session)."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_killed_chapter_resumes_to_the_uninterrupted_results(tmp_path, tool_env):
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    def _env(tree: Path) -> dict[str, str]:
        return {**os.environ, **tool_env(tree)}

    quiet = dict(cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = subprocess.Popen(RUN_02, env=_env(whole), **quiet)
    victim = subprocess.Popen(RUN_02, env=_env(killed), **quiet)
    runs = killed / "build" / "runs"
    deadline = time.monotonic() + 240
    while not list(runs.glob("*/checkpoint_last.pt")) and victim.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    _kill_tree(victim)
    assert victim.returncode == -signal.SIGKILL, "the chapter finished before it was killed"
    unfinished = [d.name for d in runs.iterdir() if not (d / "done.json").exists()]
    assert unfinished, "killed after training: the resume path was not exercised"
    out = killed / "results" / "smoke" / "shapes" / "02"
    assert not (out / "run.json").exists()
    assert not out.exists() or not list(out.glob("*.csv"))

    resumed = subprocess.run(RUN_02, env=_env(killed), capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "02: complete" in resumed.stdout
    assert reference.wait(timeout=300) == 0
    ref = whole / "results" / "smoke" / "shapes" / "02"
    tables = sorted(p.name for p in ref.glob("*.csv"))
    assert tables and tables == sorted(p.name for p in out.glob("*.csv"))
    for name in tables:
        assert (ref / name).read_bytes() == (out / name).read_bytes(), name
    for name in unfinished:   # the resumed training equals the uninterrupted one exactly
        a = torch.load(whole / "build" / "runs" / name / "model_best.pt", weights_only=False)
        b = torch.load(runs / name / "model_best.pt", weights_only=False)
        assert a["epoch"] == b["epoch"] and a["metrics"] == b["metrics"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert (json.loads((whole / "build" / "runs" / name / "history.json").read_text())
                == json.loads((runs / name / "history.json").read_text()))

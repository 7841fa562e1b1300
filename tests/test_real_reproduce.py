"""The reproducer's real-data path: bad input is a one-line error before anything trains,
runs are keyed by content, protocols run on their splits, a failed run keeps the good one."""

import json
import shutil

import numpy as np
import pytest

from xmrlib import reproduce as rp
from xmrlib.data import load_precomp
from xmrlib.data.fixtures import make_precomp_fixture
from xmrlib.utils import build_dir


def _cli(capsys, *argv):
    """Exit code and stderr of ``python -m xmrlib.reproduce ARGV``."""
    code = rp.main(list(argv))
    return code, capsys.readouterr().err


def _one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _copy(real_root, dataset, tmp_path):
    shutil.copytree(real_root / dataset, tmp_path / "data" / dataset)
    return tmp_path / "data" / dataset


def _no_training_happened():
    runs = build_dir() / "runs"
    return not runs.exists() or not any(runs.glob("*/config.json"))


@pytest.fixture()
def fresh_build(tmp_path, monkeypatch):
    """A build folder of this test only (so 'nothing trained' can be checked)."""
    monkeypatch.setenv("XMR_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("XMR_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path / "build"


# --------------------------------------------------------------------------- bad input, exit 2

@pytest.mark.parametrize("case,argv_extra,match", [
    ("root_is_coco", ["--dataset", "f30k_precomp"], r"named coco_precomp \(MS-COCO\) but the "
                                                     r"dataset asked for is f30k_precomp"),
    ("testall_4000", ["--dataset", "coco_precomp"], r"testall_ims.npy: 4000 images, expected "
                                                     r"5000"),
    ("nan", ["--dataset", "f30k_precomp"], r"train_ims.npy: row \d+ holds NaN"),
    ("int8", ["--dataset", "f30k_precomp"], r"dev_ims.npy: features of dtype int8"),
    ("dim", ["--dataset", "f30k_precomp"], r"test_ims.npy: feature size 8, expected 16"),
    ("semantics_tab", ["--dataset", "f30k_precomp"], r"train_semantics.txt, line 3: found a "
                                                      r"tab"),
    ("epochs_abc", ["--dataset", "shapes", "-p", "epochs", "abc"],
     r"-p epochs 'abc': expected an integer"),
    ("epochs_float", ["--dataset", "shapes", "-p", "epochs", "1.5"],
     r"-p epochs 1.5: expected an integer"),
    ("lr_fast", ["--dataset", "shapes", "-p", "lr", "fast"], r"-p lr 'fast': expected a number"),
    ("sweep_int", ["--dataset", "shapes", "-p", "sweep_batch_sizes", "32"],
     r"-p sweep_batch_sizes 32: expected a list"),
])
def test_bad_input_is_one_error_line_before_training(real_root, tmp_path, capsys, fresh_build,
                                                    case, argv_extra, match):
    root = tmp_path / "data"
    if case == "root_is_coco":
        root = _copy(real_root, "coco_precomp", tmp_path)
    elif case == "testall_4000":
        make_precomp_fixture(_copy(real_root, "coco_precomp", tmp_path), "coco_precomp",
                             sizes={"testall": 4000})
    elif case in ("nan", "int8", "dim", "semantics_tab"):
        folder = _copy(real_root, "f30k_precomp", tmp_path)
        if case == "nan":
            x = np.load(folder / "train_ims.npy")
            x[-1, 0, 0] = np.nan                                   # the last row is sampled
            np.save(folder / "train_ims.npy", x)
        elif case == "int8":
            np.save(folder / "dev_ims.npy", np.ones((40, 4, 16), np.int8))
        elif case == "dim":
            np.save(folder / "test_ims.npy", np.ones((1000, 4, 8), np.float32))
        else:
            lines = (folder / "train_semantics.txt").read_text().splitlines()
            lines[2] = "blue car:0.93\twhite building:0.88"
            (folder / "train_semantics.txt").write_text("\n".join(lines) + "\n")
    argv = ["run", "--profile", "smoke", "--device", "cpu", "--chapters", "03", *argv_extra]
    if "shapes" not in argv_extra:
        argv += ["--data-root", str(root)]
    code, err = _cli(capsys, *argv)
    assert code == 2
    assert __import__("re").search(match, _one_error_line(err))
    assert _no_training_happened()


def test_a_sweep_list_and_none_pass_the_type_check(capsys, fresh_build, monkeypatch):
    """Well-typed values reach the runner (which is stopped before any notebook runs)."""
    seen = {}
    monkeypatch.setattr(rp, "_execute", lambda nb, out, params: seen.update(params) or None)
    code, _ = _cli(capsys, "run", "--profile", "smoke", "--device", "cpu", "--chapters", "03",
                   "-p", "sweep_batch_sizes", "[16, 32]", "-p", "epochs", "None", "--seed", "4")
    assert code == 0 and seen["sweep_batch_sizes"] == [16, 32] and seen["seed"] == 4


# --------------------------------------------------------------------------- evaluate

@pytest.fixture(scope="module")
def coco_run(real_root, tmp_path_factory):
    """A tiny VSE++ trained on the COCO fixture (one epoch)."""
    from xmrlib.runs import fit_or_load
    from xmrlib.train import TrainConfig
    from xmrlib.vocab import Vocabulary

    folder = real_root / "coco_precomp"
    train, dev = load_precomp(folder, "train"), load_precomp(folder, "dev")
    config = dict(vocab=Vocabulary.build(train.captions).to_dict(), img_dim=16, embed_size=8,
                  word_dim=8)
    cfg = TrainConfig(epochs=1, batch_size=64, lr=2e-3)
    return fit_or_load("vsepp", config, train, dev, cfg, device="cpu", progress=False,
                       root=tmp_path_factory.mktemp("runs")).run_dir


def test_evaluate_coco_protocols_on_testall(real_root, coco_run, capsys):
    """Both COCO protocols default to testall (5000 images); the 5-fold metrics are the mean of
    the folds of the 5K score matrix, computed here independently."""
    out = {}
    for protocol in ("5fold1k", "5k"):
        code = rp.main(["evaluate", "--run-dir", str(coco_run), "--dataset", "coco_precomp",
                        "--data-root", str(real_root), "--protocol", protocol, "--device", "cpu"])
        assert code == 0
        out[protocol] = json.loads(capsys.readouterr().out)
    from xmrlib.checkpoint import load_run
    from xmrlib.evaluation import evaluate, recall_metrics

    data = load_precomp(real_root / "coco_precomp", "testall")
    _, sims = evaluate(load_run(coco_run, device="cpu"), data, protocol="5k", device="cpu",
                       return_sims=True)
    assert out["5k"]["rsum"] == pytest.approx(recall_metrics(sims)["rsum"], abs=1e-4)
    folds = [recall_metrics(sims[1000 * k:1000 * (k + 1), 5000 * k:5000 * (k + 1)])
             for k in range(5)]
    assert out["5fold1k"]["i2t_r1"] == pytest.approx(np.mean([f["i2t_r1"] for f in folds]))


@pytest.mark.parametrize("argv_extra,match", [
    (["--protocol", "5fold1k", "--split", "test"],
     r"the 5fold1k protocol of MS-COCO is defined on the testall split"),
    (["--protocol", "5k", "--split", "dev"], r"defined on the testall split"),
])
def test_evaluate_rejects_a_protocol_on_the_wrong_split(real_root, coco_run, capsys, argv_extra,
                                                       match):
    code, err = _cli(capsys, "evaluate", "--run-dir", str(coco_run), "--dataset", "coco_precomp",
                     "--data-root", str(real_root), "--device", "cpu", *argv_extra)
    assert code == 2 and __import__("re").search(match, _one_error_line(err))


def test_evaluate_with_only_testall_and_a_model_of_another_feature_size(real_root, coco_run,
                                                                        tmp_path, capsys):
    folder = _copy(real_root, "coco_precomp", tmp_path)
    for name in ("test_ims.npy", "test_caps.txt", "test_semantics.txt"):
        (folder / name).unlink()                                   # testall only: works
    code = rp.main(["evaluate", "--run-dir", str(coco_run), "--dataset", "coco_precomp",
                    "--data-root", str(folder.parent), "--protocol", "5k", "--device", "cpu"])
    assert code == 0 and "rsum" in capsys.readouterr().out
    for split in ("train", "dev", "testall"):                      # features of another size
        x = np.load(folder / f"{split}_ims.npy")
        np.save(folder / f"{split}_ims.npy", x[..., :8].copy())
    code, err = _cli(capsys, "evaluate", "--run-dir", str(coco_run), "--dataset",
                     "coco_precomp", "--data-root", str(folder.parent), "--device", "cpu")
    assert code == 2
    assert "testall_ims.npy: features of size 8, but the model" in _one_error_line(err)


# --------------------------------------------------------------------------- content identity

def test_changed_features_make_a_new_run(real_root, tmp_path):
    """A run is keyed by the content of its data, not by the folder: replaced features at the
    same path give another run folder; the same content elsewhere gives the same one."""
    from xmrlib.runs import run_data_identity

    folder = _copy(real_root, "f30k_precomp", tmp_path)
    train, dev = load_precomp(folder, "train"), load_precomp(folder, "dev")
    before = run_data_identity(train, dev)
    assert str(tmp_path) not in json.dumps(before)
    other = tmp_path / "elsewhere" / "f30k_precomp"
    shutil.copytree(folder, other)
    assert run_data_identity(load_precomp(other, "train"), load_precomp(other, "dev")) == before
    x = np.load(folder / "train_ims.npy")
    np.save(folder / "train_ims.npy", np.roll(x, 1, axis=0))       # same size and header
    after = run_data_identity(load_precomp(folder, "train"), dev)
    assert after != before


# --------------------------------------------------------------------------- publishing

def _fake_chapter(tmp_path, body):
    """A one-cell chapter notebook 01 whose code cell is ``body``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\ndataset = "shapes"\ndata_root = None\n'
                                       'device = "cpu"\nseed = 0\nfail = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    folder = tmp_path / "nbs"
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, folder / "01_fake.ipynb")
    return folder


def test_a_failed_rerun_keeps_the_good_result(tmp_path, fresh_build):
    body = ("import pandas as pd\nfrom xmrlib.results import save_table\n"
            "assert not fail, 'asked to fail'\n"
            "save_table(pd.DataFrame({'x': [seed]}), 't', chapter='01', profile=profile, "
            "dataset=dataset)")
    nbs = _fake_chapter(tmp_path, body)
    [ok] = rp.run_chapters("smoke", "shapes", device="cpu", nb_dir=nbs, log=lambda m: None)
    assert ok.status == "complete"
    final = rp.results_dir("smoke", "shapes", "01")
    good = json.loads((final / "run.json").read_text())
    [bad] = rp.run_chapters("smoke", "shapes", device="cpu", nb_dir=nbs, params={"fail": True},
                            force=True, log=lambda m: None)
    assert bad.status == "failed"
    assert json.loads((final / "run.json").read_text()) == good    # still the good run
    assert (final / "t.csv").read_text() == "x\n0\n"
    assert not list(final.parent.glob(".01.*"))                    # no leftovers


def test_run_json_names_no_machine_path(real_root, tmp_path, fresh_build):
    nbs = _fake_chapter(tmp_path, "x = 1")
    [ok] = rp.run_chapters("smoke", "f30k_precomp", data_root=real_root, device="cpu",
                           nb_dir=nbs, log=lambda m: None)
    assert ok.status == "complete"
    text = (rp.results_dir("smoke", "f30k_precomp", "01") / "run.json").read_text()
    assert str(real_root) not in text and str(tmp_path) not in text
    info = json.loads(text)
    assert info["data"]["source"] == "f30k_precomp"
    assert set(info["data"]["fingerprints"]) == {"train", "dev", "test"}
    assert info["data"]["vocabulary"].startswith("official vocabulary file vocab/")
    # the same parameters and data: complete, skipped
    [again] = rp.run_chapters("smoke", "f30k_precomp", data_root=real_root, device="cpu",
                              nb_dir=nbs, log=lambda m: None)
    assert again.status == "skipped"


# --------------------------------------------------------------------------- training CLI

def test_training_cli_uses_the_datasets_values(real_root, capsys, fresh_build):
    """``python -m xmrlib.train --dataset coco_precomp`` trains with the data set's profile
    values: the official vocabulary file beside the features, not one built as for Shapes."""
    from xmrlib import runs
    from xmrlib.vocab import Vocabulary

    code = runs.main(["--chapter", "03", "--profile", "smoke", "--dataset", "coco_precomp",
                      "--data-root", str(real_root), "--device", "cpu"])
    assert code == 0
    run_dir = capsys.readouterr().out.split()[0]
    config = json.loads((__import__("pathlib").Path(run_dir) / "config.json").read_text())
    official = Vocabulary.load(real_root.parent / "vocab" / "coco_precomp_vocab.json")
    assert config["model"]["config"]["vocab"] == official.to_dict()


def test_check_is_the_dry_run_of_the_cli(capsys, fresh_build):
    """``reproduce check`` (the real-data guide's first GPU step) runs the preflight table."""
    code = rp.main(["check", "--profile", "smoke", "--chapters", "02", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "| 02 | Kiros VSE |" in out and "| ok |" in out


def test_the_documented_commands_parse():
    """Every ``python -m xmrlib.reproduce`` command of the README and the real-data guide is
    one the CLI accepts (subcommand and options)."""
    import shlex

    from xmrlib.utils import repo_root

    commands = []
    for page in ("README.md", "book/real_data.md"):
        for line in (repo_root() / page).read_text(encoding="utf-8").splitlines():
            if line.startswith("python -m xmrlib.reproduce "):
                commands.append(shlex.split(line.split("#")[0])[3:])
    assert len(commands) >= 10
    parser = rp._parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the CLI refuses the documented command: {' '.join(argv)}")

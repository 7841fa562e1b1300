"""The real-data path on format-exact fixtures: layout, folder checks, semantics, per-caption rows."""

import json
import re
import shutil

import numpy as np
import pytest

from xmrlib.data import DataError, first_images, get_dataset, load_precomp, make_loader
from xmrlib.data.fixtures import make_fixtures, make_precomp_fixture
from xmrlib.data.precomp import SEMANTICS_FORMAT, parse_semantics_line
from xmrlib.data.validate import (SplitInfo, _check_identity, check_dataset,
                                  check_protocol_split, protocol_split)
from xmrlib.utils import repo_root
from xmrlib.vocab import Vocabulary


def _copy(real_root, dataset, tmp_path):
    """A private copy of one fixture data set (tests below damage it)."""
    dst = tmp_path / "data" / dataset
    shutil.copytree(real_root / dataset, dst)
    return dst


# --------------------------------------------------------------------------- the fixtures

def test_fixtures_have_the_released_layout(real_root):
    for dataset, splits in {"f30k_precomp": ("train", "dev", "test"),
                            "coco_precomp": ("train", "dev", "test", "testall")}.items():
        folder = real_root / dataset
        for split in splits:
            ims = np.load(folder / f"{split}_ims.npy")
            lines = (folder / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()
            assert ims.dtype == np.float32 and ims.ndim == 3
            assert len(lines) == 5 * len(ims) and all(line.strip() for line in lines)
            assert (ims >= 0).all() and 0.2 < (ims == 0).mean() < 0.8  # sparse ReLU outputs
        vocab = json.loads((real_root.parent / "vocab" / f"{dataset}_vocab.json").read_text())
        assert set(vocab) == {"word2idx", "idx2word", "idx"}            # SCAN's serialize_vocab
        assert vocab["idx"] == len(vocab["word2idx"]) == len(vocab["idx2word"])
        assert [vocab["idx2word"][str(i)] for i in range(4)] == ["<pad>", "<start>", "<end>",
                                                                   "<unk>"]
    assert len(np.load(real_root / "f30k_precomp" / "test_ims.npy")) == 1000
    assert len(np.load(real_root / "coco_precomp" / "testall_ims.npy")) == 5000
    f30k = np.load(real_root / "f30k_precomp" / "train_ims.npy")
    coco = np.load(real_root / "coco_precomp" / "train_ims.npy")
    assert f30k.shape == coco.shape and not np.array_equal(f30k, coco)   # two data sets


def test_fixture_cli_writes_what_the_loader_reads(tmp_path, capsys):
    from xmrlib.data.fixtures import main

    assert main([str(tmp_path), "--datasets", "f30k_precomp", "--n-train", "10",
                 "--n-dev", "5", "--regions", "2", "--dim", "3"]) == 0
    assert f"--data-root {tmp_path / 'data'}" in capsys.readouterr().out
    folder = get_dataset("f30k_precomp", data_root=tmp_path / "data")
    assert load_precomp(folder, "train").images.shape == (10, 2, 3)


def test_get_dataset_accepts_the_fixtures_and_names_the_folder(real_root):
    assert get_dataset("coco_precomp", data_root=real_root) == real_root / "coco_precomp"
    assert get_dataset("f30k_precomp", data_root=real_root / "f30k_precomp") == \
        real_root / "f30k_precomp"


# --------------------------------------------------------------------------- whole-folder checks

@pytest.mark.parametrize("case,match", [
    ("testall_4000", r"testall_ims.npy: 4000 images, expected 5000"),
    ("no_testall", r"missing testall_ims.npy, testall_caps.txt"),
    ("dim", r"test_ims.npy: feature size 8, expected 16 as in train_ims.npy"),
    ("int8", r"train_ims.npy: features of dtype int8, expected floating point"),
    ("nan", r"testall_ims.npy: row 0 holds NaN or infinite values"),
    ("caps", r"dev_caps.txt: 199 captions, expected a multiple of 5"),
])
def test_check_dataset_coco_errors(real_root, tmp_path, case, match):
    folder = _copy(real_root, "coco_precomp", tmp_path)
    if case == "testall_4000":
        make_precomp_fixture(folder, "coco_precomp", sizes={"testall": 4000})
    elif case == "no_testall":
        (folder / "testall_ims.npy").unlink()
        (folder / "testall_caps.txt").unlink()
    elif case == "dim":
        np.save(folder / "test_ims.npy", np.ones((1000, 4, 8), np.float32))
    elif case == "int8":
        np.save(folder / "train_ims.npy", np.ones((120, 4, 16), np.int8))
    elif case == "nan":
        x = np.load(folder / "testall_ims.npy")
        x[0, 1, 2] = np.nan
        np.save(folder / "testall_ims.npy", x)
    elif case == "caps":
        lines = (folder / "dev_caps.txt").read_text().splitlines()
        (folder / "dev_caps.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=match):
        get_dataset("coco_precomp", data_root=folder.parent)


def test_a_data_root_that_contradicts_the_dataset_names_both(real_root, tmp_path):
    with pytest.raises(DataError, match=r"named coco_precomp \(MS-COCO\).*f30k_precomp "
                                        r"\(Flickr30K\)"):
        get_dataset("f30k_precomp", data_root=real_root / "coco_precomp")
    # COCO's files copied under the Flickr30K name: its testall split gives it away
    shutil.copytree(real_root / "coco_precomp", tmp_path / "f30k_precomp")
    with pytest.raises(DataError, match=r"testall split is MS-COCO's 5K test set.*--dataset is "
                                        r"f30k_precomp"):
        get_dataset("f30k_precomp", data_root=tmp_path)


def test_released_split_sizes_identify_the_other_dataset(tmp_path):
    coco_train = {"train": SplitInfo(113287, 5 * 113287, (113287, 36, 2048), False)}
    with pytest.raises(DataError, match=r"113287 images, the size of MS-COCO's train split"):
        _check_identity("f30k_precomp", tmp_path, ["train"], coco_train)
    f30k_dev = {"dev": SplitInfo(1014, 5070, (1014, 36, 2048), False)}
    with pytest.raises(DataError, match=r"1014 images, the size of Flickr30K's dev split"):
        _check_identity("coco_precomp", tmp_path, ["dev"], f30k_dev)
    _check_identity("f30k_precomp", tmp_path, ["train"], {"train": SplitInfo(120, 600, (), False)})


def test_protocols_have_their_split_and_size():
    assert protocol_split("coco_precomp", "5k") == protocol_split("coco_precomp", "5fold1k") \
        == "testall"
    assert protocol_split("f30k_precomp", "1k") == "test"
    check_protocol_split("coco_precomp", "5fold1k", "testall", 5000)
    check_protocol_split("shapes", "5fold1k", "test", 100)                 # Shapes: any size
    with pytest.raises(DataError, match=r"split 'test': the 5fold1k protocol of MS-COCO is "
                                        r"defined on the testall split"):
        check_protocol_split("coco_precomp", "5fold1k", "test", 1000)
    with pytest.raises(DataError, match=r"1000 images, expected 5000"):
        check_protocol_split("coco_precomp", "5k", "testall", 1000)
    with pytest.raises(DataError, match=r"protocol '5k' is not one of Flickr30K's"):
        protocol_split("f30k_precomp", "5k")


# --------------------------------------------------------------------------- semantics

def test_semantics_format_documented_equals_parsed(tmp_path):
    """The example of the format string and the guide's example both parse; a tab is an error."""
    example = re.search(r"e\.g\. '([^']*)'", SEMANTICS_FORMAT).group(1)
    assert parse_semantics_line(example, tmp_path, 1) == [("blue car", 0.93),
                                                          ("white building", 0.88)]
    guide = (repo_root() / "book" / "real_data.md").read_text(encoding="utf-8")
    block = re.search(r"```text\n(blue car[^\n]*)\n", guide).group(1)
    assert parse_semantics_line(block, tmp_path, 1)[0] == ("blue car", 0.93)
    with pytest.raises(DataError, match=r"x_semantics.txt, line 7: found a tab"):
        parse_semantics_line("blue car:0.93\twhite building:0.88", tmp_path / "x_semantics.txt", 7)


def test_real_semantics_load_per_image(real_root):
    data = load_precomp(real_root / "f30k_precomp", "train")
    assert len(data.semantics) == len(data)
    assert all(conf == sorted(conf, reverse=True) for conf in
               ([c for _, c in sem] for sem in data.semantics))
    nouns = {p.split()[-1] for sem in data.semantics for p, _ in sem}
    assert "café" in nouns or len(nouns) > 5


def test_missing_semantics_says_how_to_make_them(real_root, tmp_path):
    from xmrlib.data.sparse import sparse_split

    folder = _copy(real_root, "f30k_precomp", tmp_path)
    (folder / "train_semantics.txt").unlink()
    with pytest.raises(ValueError, match=r"train_semantics.txt: A3VSE needs .* Make it beside "
                                         r"train_ims.npy: one line per image.*joined by '\|'"):
        sparse_split(load_precomp(folder, "train"), 0.5, 1)


# --------------------------------------------------------------------------- vsepp's layout

def test_vsepp_per_caption_rows_are_kept_for_training(tmp_path):
    """vsepp pairs caption j with feature row j (im_div = 1); evaluation uses row 5i."""
    folder = tmp_path / "f30k_precomp"
    make_precomp_fixture(folder, "f30k_precomp", n_train=6, n_dev=2, dim=3, layout="vsepp")
    rows = np.load(folder / "train_ims.npy")                               # (30, 3)
    assert rows.shape == (30, 3) and not np.array_equal(rows[0], rows[1])
    data = load_precomp(folder, "train")
    assert data.images.shape == (6, 3) and np.array_equal(data.images, rows[::5])
    assert np.array_equal(data.caption_images, rows)
    vocab = Vocabulary.build(data.captions)
    batch = next(iter(make_loader(data, vocab, 30, shuffle=False)))
    assert np.array_equal(batch["images"][:, 0].numpy(), rows)             # row j for caption j
    cut = first_images(data, 2)
    assert np.array_equal(cut.caption_images, rows[:10])


# --------------------------------------------------------------------------- content identity

def test_split_fingerprint_follows_content_not_place(real_root, tmp_path):
    a = load_precomp(real_root / "f30k_precomp", "train")
    folder = _copy(real_root, "f30k_precomp", tmp_path)
    b = load_precomp(folder, "train")
    assert a.fingerprint == b.fingerprint and a.fingerprint
    x = np.load(folder / "train_ims.npy")
    np.save(folder / "train_ims.npy", x[:, ::-1].copy())                   # same size, new values
    assert load_precomp(folder, "train").fingerprint != a.fingerprint
    cut = first_images(a, 10)
    assert cut.fingerprint == a.fingerprint and "source" not in cut.manifest
    assert str(tmp_path) not in json.dumps(cut.manifest)

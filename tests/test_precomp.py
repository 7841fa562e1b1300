import numpy as np
import pytest

from xmrlib.data import DataError, first_images, get_dataset, load_precomp


def _write(root, n=4, caps=None, ims=None, split="train"):
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{split}_ims.npy", ims if ims is not None else
            np.arange(n * 3 * 2, dtype=np.float32).reshape(n, 3, 2))
    text = caps if caps is not None else "".join(f"caption {i}\n" for i in range(5 * n))
    (root / f"{split}_caps.txt").write_bytes(text.encode() if isinstance(text, str) else text)
    return root


def test_real_layout_round_trip_and_memmap(tmp_path):
    d = load_precomp(_write(tmp_path / "r"), "train")
    assert isinstance(d.images, np.memmap)
    assert d.images.shape == (4, 3, 2) and d.captions[7] == "caption 7"
    assert d.n_regions.tolist() == [3, 3, 3, 3] and d.boxes is None and d.groups is None


def test_global_features_and_im_div(tmp_path):
    d = load_precomp(_write(tmp_path / "g", ims=np.ones((4, 8), np.float32)), "train")
    assert d.images.shape == (4, 8)
    per_cap = np.repeat(np.arange(4, dtype=np.float32), 5)[:, None] * np.ones((1, 8), np.float32)
    d = load_precomp(_write(tmp_path / "c", ims=per_cap), "train")
    assert d.images.shape == (4, 8) and d.images[:, 0].tolist() == [0, 1, 2, 3]


def test_dev_truncation(tmp_path):
    root = _write(tmp_path / "d", n=6, split="dev")
    assert len(load_precomp(root, "dev", max_dev_captions=20).captions) == 20
    assert load_precomp(root, "dev", max_dev_captions=20).images.shape[0] == 4
    assert len(load_precomp(root, "dev", max_dev_captions=None).captions) == 30


@pytest.mark.parametrize("kind,match", [
    ("nofolder", "does not exist"),
    ("nofile", "missing file .*train_ims.npy"),
    ("rank", "expected rank 2"),
    ("truncated", "truncated or corrupt"),
    ("notmult5", "expected a multiple of 5"),
    ("mismatch", "expected 5 x 4"),
    ("utf8", "line 3: not valid UTF-8"),
    ("empty", "line 2: empty caption"),
    ("semantics", "line 2: expected 'phrase:confidence'"),
    ("unsorted", "line 1: items must be sorted"),
    ("extras_n", "train_groups.npy: 2 entries, expected 4"),
])
def test_loader_errors(tmp_path, kind, match):
    root = tmp_path / "e"
    if kind == "nofile":
        root.mkdir()
    elif kind == "rank":
        _write(root, ims=np.ones((4, 2, 2, 2), np.float32))
    elif kind == "truncated":
        _write(root)
        raw = (root / "train_ims.npy").read_bytes()
        (root / "train_ims.npy").write_bytes(raw[: len(raw) - 10])
    elif kind == "notmult5":
        _write(root, caps="a\n" * 19)
    elif kind == "mismatch":
        _write(root, caps="a\n" * 15)
    elif kind == "utf8":
        _write(root, caps=b"a\nb\n\xff\xfe\n" + b"c\n" * 17)
    elif kind == "empty":
        _write(root, caps="a\n \n" + "c\n" * 18)
    elif kind in ("semantics", "unsorted"):
        _write(root)
        line1 = "red circle:0.2|blue square:0.9" if kind == "unsorted" else "red circle:0.9"
        (root / "train_semantics.txt").write_text(f"{line1}\nred circle 0.9\n\n\n")
    elif kind == "extras_n":
        _write(root)
        np.save(root / "train_groups.npy", np.zeros(2, np.int64))
    with pytest.raises(DataError, match=match):
        load_precomp(root, "train")


def test_get_dataset_shapes_cached_and_real_errors(tmp_path, monkeypatch):
    import xmrlib.config as config

    monkeypatch.setitem(config.COMMON, "tiny", {"n_train": 12, "n_dev": 4, "n_test": 4,
                                                "features": "sim"})
    a = get_dataset("shapes", profile="tiny")
    mtime = (a / "train_ims.npy").stat().st_mtime_ns
    assert get_dataset("shapes", profile="tiny") == a
    assert (a / "train_ims.npy").stat().st_mtime_ns == mtime      # cached, not regenerated
    assert load_precomp(a, "train").images.shape[0] == 12
    with pytest.raises(DataError, match="needs data_root"):
        get_dataset("f30k_precomp")
    with pytest.raises(DataError, match="no f30k_precomp files"):
        get_dataset("f30k_precomp", data_root=tmp_path)
    _write(tmp_path / "f30k_precomp")
    with pytest.raises(DataError, match="missing dev_ims.npy"):
        get_dataset("f30k_precomp", data_root=tmp_path)


def test_first_images_cuts_every_field_consistently(shapes_root):
    data = load_precomp(shapes_root, "test")
    n = 3
    cut = first_images(data, n)
    assert len(cut) == n and cut.images.shape[0] == n
    assert cut.captions == [data.captions[j] for j in range(5 * n)]      # image-major captions
    for name in ("n_regions", "boxes", "groups", "scenes", "semantics", "image_paths"):
        full, part = getattr(data, name), getattr(cut, name)
        assert len(part) == n and all(np.array_equal(a, b) for a, b in zip(part, full[:n])), name
    assert cut.manifest["first_images"] == n and "first_images" not in data.manifest
    assert first_images(data, None) is data and first_images(data, len(data) + 5) is data
    with pytest.raises(ValueError, match="positive number"):
        first_images(data, 0)

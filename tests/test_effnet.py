"""EfficientNet-lite0 region features (xmrlib.data.effnet) and Shapes features="cnn"."""

import numpy as np
import pytest
import torch

from xmrlib.data import load_precomp, make_shapes
from xmrlib.data.effnet import (BLOCK_ARGS, load_efficientnet_lite0, region_features,
                                weights_path)
from xmrlib.data.shapes import object_box, render


@pytest.fixture(scope="module")
def model():
    return load_efficientnet_lite0("cpu")


def test_state_dict_shapes_follow_block_args(model):
    """Every layer's shape, derived by hand from the block table, matches the packaged file."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert len(state) == 296
    expected = {"_conv_stem.weight": (32, 3, 3, 3), "_bn0.weight": (32,),
                "_conv_head.weight": (1280, 320, 1, 1), "_bn1.weight": (1280,),
                "_fc.weight": (1000, 1280)}
    n, c_in = 0, 32
    for expand, kernel, _stride, c_out, repeats in BLOCK_ARGS:
        for _ in range(repeats):
            mid = c_in * expand
            if expand != 1:
                expected[f"_blocks.{n}._expand_conv.weight"] = (mid, c_in, 1, 1)
            else:
                assert f"_blocks.{n}._expand_conv.weight" not in state
            expected[f"_blocks.{n}._depthwise_conv.weight"] = (mid, 1, kernel, kernel)
            expected[f"_blocks.{n}._project_conv.weight"] = (c_out, mid, 1, 1)
            expected[f"_blocks.{n}._bn2.running_var"] = (c_out,)
            n, c_in = n + 1, c_out
    assert n == 16 and f"_blocks.{n}._project_conv.weight" not in state
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert not model.training


def _scene(colour, shape, jitter=(0.0, 0.0)):
    obj = {"colour": colour, "shape": shape, "size": "large", "row": 1, "col": 1}
    obj["box"] = object_box(obj, jitter)
    return {"background": "white", "objects": [obj]}


def test_features_shape_probe_and_determinism(model):
    """Same object shifted by 2% of the image vs different colour+shape, in a fixed crop box.

    Measured (relative distance |a-b| / sqrt(|a||b|)): same object 0.20-0.68, different objects
    1.03-1.33 (mean ratio ~3.4). Asserted with slack: every same pair closer than every different
    pair, and the mean ratio above 2. (Randomly initialised nets pass the ratio too, 2.9-3.9 for
    three seeds; :func:`test_pretrained_imagenet_head_is_confident` is what shows pretraining.)
    """
    pairs = [("red", "circle"), ("blue", "square"), ("green", "triangle"),
             ("yellow", "star"), ("purple", "diamond")]
    fixed = object_box(_scene("red", "circle")["objects"][0])
    ims = np.stack([np.asarray(render(_scene(c, s, j))) for c, s in pairs
                    for j in ((0.0, 0.0), (0.02, 0.01))])          # (10, 112, 112, 3)
    boxes = [[fixed]] * len(ims)
    f = region_features(ims, boxes, model=model)
    assert f.shape == (10, 1280) and f.dtype == np.float32
    assert np.array_equal(f, region_features(ims, boxes, model=model))

    def dist(a, b):
        return np.linalg.norm(f[a] - f[b]) / np.sqrt(np.linalg.norm(f[a]) * np.linalg.norm(f[b]))

    same = [dist(2 * i, 2 * i + 1) for i in range(5)]
    diff = [dist(2 * i, 2 * j) for i in range(5) for j in range(i + 1, 5)]
    assert max(same) < min(diff)
    assert np.mean(diff) / np.mean(same) > 2.0


def test_region_features_crops_follow_boxes(model):
    """Two boxes of one image give the same rows as the crops passed as separate images."""
    im = np.asarray(render({"background": "grey", "objects": [
        dict(_scene("red", "circle")["objects"][0], row=0, col=0, box=[0.0, 0.0, 0.3, 0.3]),
        dict(_scene("blue", "star")["objects"][0], row=2, col=2, box=[0.7, 0.7, 1.0, 1.0])]}))
    both = region_features(im[None], [[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]], model=model)
    a = region_features(im[None, :56, :56], [[[0, 0, 1, 1]]], model=model)
    b = region_features(im[None, 56:, 56:], [[[0, 0, 1, 1]]], model=model)
    assert both.shape == (2, 1280)
    np.testing.assert_allclose(both, np.concatenate([a, b]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="1 images but 2 box lists"):
        region_features(im[None], [[[0, 0, 1, 1]], [[0, 0, 1, 1]]], model=model)


def test_make_shapes_cnn_writes_loadable_features(tmp_path, model):
    root = make_shapes(tmp_path / "cnn", 6, 2, 2, features="cnn", device="cpu")
    sim = make_shapes(tmp_path / "sim", 6, 2, 2, features="sim")
    data = load_precomp(root, "train")
    ims, nreg = np.asarray(data.images), np.load(root / "train_nregions.npy")
    assert ims.shape == (6, 6, 1280) and ims.dtype == np.float32
    assert data.captions == load_precomp(sim, "train").captions
    for i in range(6):
        assert np.all(ims[i, nreg[i]:] == 0) and np.all(np.abs(ims[i, : nreg[i]]).sum(1) > 0)
    # image 0, region 0 recomputed from the saved PNG and its box (alone in its batch, so only
    # float round-off may differ: measured 5e-6)
    from PIL import Image
    png = Image.open(root / "images" / "train" / "00000.png")
    box = np.load(root / "train_boxes.npy")[0, :1]
    np.testing.assert_allclose(ims[0, :1], region_features([png], [box], model=model),
                               rtol=1e-4, atol=1e-4)
    again = make_shapes(tmp_path / "again", 6, 2, 2, features="cnn", device="cpu")
    for name in ("train_ims.npy", "test_ims.npy", "manifest.json"):
        assert (root / name).read_bytes() == (again / name).read_bytes(), name


def test_pretrained_imagenet_head_is_confident(model):
    """ImageNet logits on six whole 224-px scenes: the pretrained net is confident and input-
    dependent (measured top-1 probability 0.10-0.26, 4 distinct classes); random initialisation
    gives 0.001 (uniform over 1000 classes) and one class for all inputs (3 seeds measured)."""
    scenes = [_scene(c, s) for c, s in [("red", "circle"), ("blue", "square"),
                                        ("green", "triangle"), ("yellow", "star"),
                                        ("purple", "diamond"), ("orange", "circle")]]
    x = torch.from_numpy(np.stack([np.asarray(render(sc, 224)) for sc in scenes]))
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0          # (6, 224, 224, 3) -> (6, 3, 224, 224)
    with torch.no_grad():
        probs = model(x).softmax(dim=1)
    assert probs.shape == (6, 1000)
    assert probs.max(dim=1).values.min() > 0.03
    assert len(set(probs.argmax(dim=1).tolist())) >= 3

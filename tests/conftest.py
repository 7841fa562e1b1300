"""Shared test setup: one thread per process, a temporary build folder, a tiny Shapes set."""

import os

os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _build_dir(tmp_path_factory):
    """Point ``xmrlib.utils.build_dir()`` at a temporary folder for the whole session."""
    old = os.environ.get("XMR_BUILD_DIR")
    os.environ["XMR_BUILD_DIR"] = str(tmp_path_factory.mktemp("build"))
    yield
    if old is None:
        os.environ.pop("XMR_BUILD_DIR", None)
    else:
        os.environ["XMR_BUILD_DIR"] = old


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A tiny Shapes folder (60 train / 20 dev / 20 test images), generated once per session."""
    from xmrlib.data import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), 60, 20, 20, seed=0)


@pytest.fixture(scope="session")
def real_root(tmp_path_factory):
    """Format-exact Flickr30K and COCO miniatures in SCAN's layout (xmrlib.data.fixtures):
    ``ROOT/data/{f30k,coco}_precomp`` and ``ROOT/vocab``; returns ``ROOT/data`` (the data root)."""
    from xmrlib.data.fixtures import make_fixtures

    return make_fixtures(tmp_path_factory.mktemp("real"))

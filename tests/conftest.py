"""Shared test setup: one thread per process, a temporary build folder, a tiny Shapes set."""

import os

os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _build_dir(tmp_path_factory):
    """Point ``xmrlib.utils.build_dir()`` at a temporary folder for the whole session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XMR_BUILD_DIR", str(tmp_path_factory.mktemp("build")))
        yield


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A tiny Shapes folder (60 train / 20 dev / 20 test images), generated once per session."""
    from xmrlib.data import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), 60, 20, 20, seed=0)


#: the ``parameters`` cell of a scratch chapter: the base parameters and one of its own, ``scale``
CHAPTER_PARAMETERS = ('profile = "default"  # smoke | default | full\ndataset = "shapes"\n'
                      'data_root = None\ndevice = "auto"\nseed = 0\nscale = 1  # chapter parameter')


class ChapterTree:
    """A scratch reproduction tree: ``build/`` and ``results/`` under ``root`` (the tools find
    them through ``XMR_BUILD_DIR`` / ``XMR_RESULTS_DIR``) and a ``notebooks`` folder of chapters."""

    def __init__(self, root):
        self.root = root
        self.notebooks = root / "nbs"
        self.notebooks.mkdir()

    def chapter(self, name: str, body: list[str]):
        """Write ``notebooks/<name>``: a title, the tagged parameters cell, one cell per ``body``."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        params = nbformat.v4.new_code_cell(CHAPTER_PARAMETERS)
        params.metadata["tags"] = ["parameters"]
        nb.cells = [nbformat.v4.new_markdown_cell("# t"), params,
                    *(nbformat.v4.new_code_cell(b) for b in body)]
        nbformat.write(nb, self.notebooks / name)
        return self.notebooks / name


def scratch_env(root) -> dict[str, str]:
    """The variables that point the tools at a scratch tree: ``build/`` and ``results/`` under
    ``root`` (``XMR_BUILD_DIR`` / ``XMR_RESULTS_DIR``), one thread."""
    return {"OMP_NUM_THREADS": "1", "XMR_BUILD_DIR": str(root / "build"),
            "XMR_RESULTS_DIR": str(root / "results")}


@pytest.fixture(scope="session")
def tool_env():
    """:func:`scratch_env`, for a test that runs the tools in a subprocess or in several trees
    (a fixture, so that test modules do not import conftest)."""
    return scratch_env


@pytest.fixture
def chapter_tree(tmp_path, monkeypatch):
    """A :class:`ChapterTree` in ``tmp_path``, its build and results folders set for this test."""
    for key, value in scratch_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    return ChapterTree(tmp_path)


@pytest.fixture(scope="session")
def real_root(tmp_path_factory):
    """Format-exact Flickr30K and COCO miniatures in SCAN's layout (xmrlib.data.fixtures):
    ``ROOT/data/{f30k,coco}_precomp`` and ``ROOT/vocab``; returns ``ROOT/data`` (the data root)."""
    from xmrlib.data.fixtures import make_fixtures

    return make_fixtures(tmp_path_factory.mktemp("real"))

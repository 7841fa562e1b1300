"""Every chapter, verbatim, with its models on a (fake) GPU and its data on the host.

Technique: each chapter notebook is executed by papermill with ``device="cuda"`` (smoke profile)
after one injected first cell that turns on ``tests/fake_cuda.py`` in the kernel. Tensors stay
real CPU tensors, so the chapter computes its real numbers, but those moved to "cuda" carry a
mark, and the kernel fails as a GPU would whenever a host tensor meets a device tensor in one
operation (a CPU batch fed to a model on the GPU), or a device tensor is converted to numpy
without ``.cpu()``. Under papermill a failed cell fails the chapter, which on a GPU would publish
none of its tables; here it fails the test, naming the cell.

The injected cell also sets the fake allocator's peak (``torch.cuda.max_memory_allocated``), so
the test can check that chapter 07 reports the device's memory, not the host's, and records the
device of every SCAN and MMCA scoring call, so that it can check that chapter 07's exhaustive
and two-stage scoring runs on the GPU, not pinned to the CPU (issue 19, defect 5). Chapter 05's
frozen MiniLM extraction runs on the host under the emulation (see ``_with_fake_gpu``).

Training reuses the session's smoke runs when ``test_notebooks.py`` ran first (a run folder's key
does not depend on the device); alone, the chapters train under the emulation too.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from xmrlib.utils import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FAKE_PEAK_MIB = 123.0


def _with_fake_gpu(path: Path, out: Path) -> Path:
    nb = nbformat.read(path, as_version=4)
    tests = Path(__file__).resolve().parent
    setup = nbformat.v4.new_code_cell(
        f"import sys\nsys.path.insert(0, {str(tests)!r})\nimport fake_cuda\n"
        f"_fake_gpu = fake_cuda.install(count=1, peak_bytes={int(FAKE_PEAK_MIB * 2**20)})\n"
        # the fake loses the device mark inside transformers' attention-mask builder, so the
        # frozen MiniLM (a one-off feature extraction, cached) runs on the host here
        "import xmrlib.text_features as _tf\n"
        "_build = _tf.build_store\n"
        "_tf.build_store = lambda *a, **k: _build(*a, **{**k, 'device': 'cpu'})\n"
        # the device of the embeddings that every SCAN similarity / MMCA pair score gets
        "from xmrlib.models.mmca import MMCA as _MMCA\n"
        "from xmrlib.models.scan import SCAN as _SCAN\n"
        "_scored_on = set()\n"
        "def _recorded(cls, name):\n"
        "    real = getattr(cls, name)\n"
        "    def method(self, img_emb, *a, **k):\n"
        "        _scored_on.add(f'{cls.__name__} {img_emb.device.type}')\n"
        "        return real(self, img_emb, *a, **k)\n"
        "    setattr(cls, name, method)\n"
        "_recorded(_SCAN, 'similarity')\n"
        "_recorded(_MMCA, 'pair_scores')")
    nb.cells.insert(0, setup)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json, os as _os\n"
        "with open(_os.path.join(_os.environ['XMR_RESULTS_DIR'], 'scored_on.json'), 'w') as _f:\n"
        "    _json.dump(sorted(_scored_on), _f)"))
    target = out / path.name
    nbformat.write(nb, target)
    return target


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_runs_with_its_models_on_a_gpu(path, tmp_path, monkeypatch):
    import papermill

    results = tmp_path / "results"
    monkeypatch.setenv("XMR_RESULTS_DIR", str(results))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    source = _with_fake_gpu(path, tmp_path)
    executed = tmp_path / f"executed_{path.name}"
    try:
        papermill.execute_notebook(str(source), str(executed), kernel_name="python3",
                                   parameters={"profile": "smoke", "dataset": "shapes",
                                               "device": "cuda"},
                                   progress_bar=False, cwd=str(path.parent))
    except papermill.PapermillExecutionError as exc:
        pytest.fail(f"{path.name} fails with its models on a GPU, cell {exc.exec_count}: "
                    f"{exc.ename}: {exc.evalue}")
    chapter = path.name[:2]
    saved = sorted((results / "smoke" / "shapes" / chapter).glob("*.csv"))
    assert saved or chapter == "01", f"{path.name}: no table saved"
    if chapter == "07":  # the memory column is the (fake) CUDA allocator's peak
        side = pd.read_csv(results / "smoke" / "shapes" / "07" / "side_by_side.csv")
        assert (side["eval_peak_mib"] == FAKE_PEAK_MIB).all(), side["eval_peak_mib"].tolist()
        # SCAN's exhaustive scores and MMCA's two stages run where the models are
        assert json.loads((results / "scored_on.json").read_text()) == ["MMCA cuda",
                                                                         "SCAN cuda"]
    executed_nb = json.loads(executed.read_text())
    assert not [o for c in executed_nb["cells"] if c["cell_type"] == "code"
                for o in c.get("outputs", []) if o.get("output_type") == "error"]

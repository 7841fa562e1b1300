"""Chapter notebooks: committed shape (outline, parameters, no outputs) and a smoke-profile run.

The smoke runs execute through ``xmrlib.reproduce`` (papermill, like ``make book``) into the
git-ignored ``build/`` folder, once per session (tests/smoke_runs.py; the book test reuses them).
"""

import json

import nbformat
import pytest
from smoke_runs import smoke_run, using_test_results

from xmrlib import reproduce as rp
from xmrlib.results import results_dir
from xmrlib.utils import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_outline(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs committed"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: expected exactly one cell tagged 'parameters'"
    names = {line.split("=")[0].strip() for line in params[0].source.splitlines()
             if "=" in line and not line.lstrip().startswith("#")}
    assert set(rp.BASE_PARAMETERS) <= names, f"{path.name}: parameters cell lacks {set(rp.BASE_PARAMETERS) - names}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert markdown.lstrip().startswith("# "), f"{path.name}: must open with a title"
    for heading in ("## Goals", "## Summary", "## Exercises", "## References"):
        assert heading in markdown, f"{path.name}: missing section {heading!r}"
    assert "```{exercise}" in markdown and "```{solution" in markdown, path.name


IPYTHON_BUILTINS = {"display", "get_ipython"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_code_has_no_undefined_names_or_unused_imports(path):
    """pyflakes over all code cells, in order: catches a name that only exists on some profile's
    path (a smoke run would not) and imports left behind when code moved into xmrlib."""
    import ast

    from pyflakes import messages
    from pyflakes.checker import Checker

    nb = nbformat.read(path, as_version=4)
    code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
    found = [m for m in Checker(ast.parse(code), filename=path.name).messages
             if isinstance(m, messages.UnusedImport) or (
                 isinstance(m, messages.UndefinedName) and m.message_args[0] not in IPYTHON_BUILTINS)]
    assert not found, "\n".join(f"{path.name}: {m.message % m.message_args}" for m in found)


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_smoke_run(path):
    chapter = path.name[:2]
    outcome, _ = smoke_run(chapter)  # its wall time is no test: timings belong in benchmarks/
    assert outcome.status == "complete", outcome.error
    executed = nbformat.read(outcome.executed, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    verdicts = ["".join(o.get("text", "") for o in c.outputs) for c in executed.cells
                if c.cell_type == "code" and "from xmrlib.exercises import" in c.source]
    assert verdicts, f"{path.name}: no exercise checker ran"
    assert all("✓" in v and "✗" not in v for v in verdicts), f"{path.name}: {verdicts}"
    with using_test_results():
        info = json.loads((results_dir("smoke", "shapes", chapter) / "run.json").read_text())
    assert info["status"] == "complete" and info["parameters"]["profile"] == "smoke"

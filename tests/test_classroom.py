"""Tests of xmrlib.classroom on a small synthetic chapter made with nbformat."""

import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from xmrlib import classroom

SECRETS = ("SECRET_GATED", "SECRET_TAGGED", "SECRET_DIRECTIVE", "SECRET_MD_TAGGED")


def _chapter():
    return new_notebook(cells=[
        new_markdown_cell("# Chapter\nGoals."),
        new_code_cell("x = 21", outputs=[new_output("stream", text="hi\n")], execution_count=1),
        new_markdown_cell("```{exercise} max violation\n:label: ex-mv\nWrite it.\n```"),
        new_code_cell("def answer():\n    raise NotImplementedError",
                      metadata={"tags": ["exercise-stub"]}),
        new_markdown_cell("Before the solution.\n````{solution-start} ex-mv\n:class: dropdown\n"
                          "````\nThe idea: SECRET_GATED prose."),
        new_code_cell("def answer():\n    return 2 * x  # SECRET_GATED code",
                      outputs=[new_output("execute_result", data={"text/plain": "42"},
                                          execution_count=2)], execution_count=2),
        new_markdown_cell("```{solution-end}\n```\nAfter the solution."),
        new_code_cell("print('SECRET_TAGGED')", metadata={"tags": ["solution"]}),
        new_markdown_cell("SECRET_MD_TAGGED", metadata={"tags": ["solution"]}),
        new_markdown_cell("Concept question.\n:::{solution} ex-q\nBecause SECRET_DIRECTIVE.\n"
                          ":::\nThe end."),
        new_code_cell("from math import sqrt\nprint(sqrt(x))"),
    ])


@pytest.fixture
def chapters(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(_chapter(), src / "01_demo.ipynb")
    return src


def _text(nb):
    return "\n".join(c.source for c in nb.cells)


def test_student_edition_has_no_solution(chapters, tmp_path):
    reports = classroom.student_edition(tmp_path / "student", chapters)
    assert reports[0].solutions_removed == 4
    nb = nbformat.read(tmp_path / "student" / "01_demo.ipynb", as_version=4)
    text = _text(nb)
    for secret in SECRETS:
        assert secret not in text
    assert "{solution" not in text
    assert "Before the solution." in text and "After the solution." in text
    assert "Concept question." in text and "The end." in text
    stubs = [c for c in nb.cells if "exercise-stub" in c.metadata.get("tags", [])]
    assert len(stubs) == 1 and "NotImplementedError" in stubs[0].source
    assert all(c.outputs == [] and c.execution_count is None
               for c in nb.cells if c.cell_type == "code")


def test_instructor_edition_keeps_solutions(chapters, tmp_path):
    classroom.student_edition(tmp_path / "teacher", chapters, with_solutions=True)
    nb = nbformat.read(tmp_path / "teacher" / "01_demo.ipynb", as_version=4)
    text = _text(nb)
    for secret in SECRETS:
        assert secret in text
    assert len(nb.cells) == len(_chapter().cells)
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")


def test_student_notebook_runs_to_first_stub(chapters, tmp_path):
    from nbclient import NotebookClient

    classroom.student_edition(tmp_path / "student", chapters)
    nb = nbformat.read(tmp_path / "student" / "01_demo.ipynb", as_version=4)
    first_stub = next(i for i, c in enumerate(nb.cells)
                      if "exercise-stub" in c.metadata.get("tags", []))
    nb.cells = nb.cells[:first_stub + 1]
    nb.cells.append(new_code_cell("print(x * 2)"))
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    assert nb.cells[-1].outputs[0]["text"] == "42\n"


def test_unclosed_gated_solution_is_an_error(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("ok"),
                             new_markdown_cell("```{solution-start} ex\n```"),
                             new_code_cell("secret = 1")])
    with pytest.raises(ValueError, match=r"bad.ipynb: cell 1: \{solution-start\}"):
        classroom.strip_solutions(nb, name="bad.ipynb")
    nb = new_notebook(cells=[new_markdown_cell("```{solution} ex\nnever closed")])
    with pytest.raises(ValueError, match="cell 0"):
        classroom.strip_solutions(nb, name="bad.ipynb")


@pytest.mark.slow
def test_cli(chapters, tmp_path):
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "xmrlib.classroom", "student-edition", str(out),
                          "--notebooks", str(chapters)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "4 solutions removed" in run.stdout
    assert "SECRET" not in (out / "01_demo.ipynb").read_text()
    same = subprocess.run([sys.executable, "-m", "xmrlib.classroom", "student-edition",
                           str(chapters), "--notebooks", str(chapters)],
                          capture_output=True, text=True)
    assert same.returncode == 2 and "overwritten" in same.stderr
    empty = subprocess.run([sys.executable, "-m", "xmrlib.classroom", "student-edition",
                            str(out), "--notebooks", str(tmp_path / "nothing")],
                           capture_output=True, text=True)
    assert empty.returncode == 2 and "no chapter notebooks" in empty.stderr

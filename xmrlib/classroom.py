"""Student and instructor editions of the chapter notebooks, generated from the chapters.

``python -m xmrlib.classroom student-edition OUT_DIR [--with-solutions] [--notebooks DIR]``
writes every ``DIR/*.ipynb`` (default: the repository's ``notebooks/``) to ``OUT_DIR`` with all
outputs cleared; without ``--with-solutions`` the solutions are removed (the student copy), with
it they are kept (the instructor copy).

Tagging convention (chapter authors follow it; the book and both editions come from one source):

* A **code or markdown cell tagged** ``solution`` is removed from the student edition.
* A **gated solution** (sphinx-exercise) is removed whole: from the markdown line opening
  ``{solution-start}`` to the closing fence after ``{solution-end}``, *including every cell in
  between* (the executed solution code cells). Text before the start line and after the end
  fence in those markdown cells stays. In a notebook this reads::

      [markdown] ```{solution-start} ex-maxviol
                 :class: dropdown
                 ```
                 The hardest negative of each row ...
      [code]     def max_violation(scores, margin): ...      <- removed with the block
      [markdown] ```{solution-end}
                 ```

* A **solution directive inside one markdown cell** (```` ```{solution} ex-id ```` or
  ``:::{solution} ex-id``, up to its closing fence) is stripped from that cell.
* A **code cell tagged** ``exercise-stub`` is the student's starting point (a signature and
  ``raise NotImplementedError`` or ``...``): it is kept in both editions. Put it *before* the
  solution; in the book it can also carry ``remove-cell`` to stay out of the HTML.
* Checker calls (``xmrlib.exercises.check_*``) are ordinary cells after the solution: in the
  book they check the solution, in the student copy the student's answer.

Cells left empty by stripping are dropped. An unclosed ``{solution-start}`` or ``{solution}``
block is an error naming the notebook and the cell.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

SOLUTION_TAG = "solution"
STUB_TAG = "exercise-stub"
_FENCE = r"^\s*(?P<fence>`{3,}|:{3,})"
_SOLUTION_START = re.compile(_FENCE + r"\{solution-start\}")
_SOLUTION_END = re.compile(_FENCE + r"\{solution-end\}")
_SOLUTION_BLOCK = re.compile(_FENCE + r"\{solution\}")


@dataclass
class EditionReport:
    """What one notebook's edition removed."""

    name: str
    cells_in: int
    cells_out: int
    solutions_removed: int


def _closes(line: str, fence: str) -> bool:
    """True if ``line`` is a bare closing fence for ``fence`` (same character, at least as long)."""
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


class _Stripper:
    """Walks a notebook's cells in order; knows whether it is inside a gated solution."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gated_since: int | None = None     # cell index of the open solution-start
        self.removed = 0

    def markdown(self, source: str, index: int) -> str:
        lines = source.splitlines(keepends=True)
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            if self.gated_since is not None:
                end = _SOLUTION_END.match(line)
                i += 1
                if end:
                    if i < len(lines) and _closes(lines[i], end["fence"]):
                        i += 1
                    self.gated_since = None
                continue
            if _SOLUTION_START.match(line):
                self.gated_since = index
                self.removed += 1
                i += 1
                continue
            block = _SOLUTION_BLOCK.match(line)
            if block:
                i += 1
                while i < len(lines) and not _closes(lines[i], block["fence"]):
                    i += 1
                if i == len(lines):
                    raise ValueError(f"{self.name}: cell {index}: a {{solution}} block is never "
                                     f"closed (expected a line {block['fence']!r})")
                i += 1
                self.removed += 1
                continue
            out.append(line)
            i += 1
        return "".join(out)


def strip_solutions(nb: NotebookNode, name: str = "<notebook>") -> tuple[NotebookNode, int]:
    """A copy of ``nb`` without its solutions (see the module docstring); returns it and the
    number of solutions removed."""
    stripper = _Stripper(name)
    cells = []
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            if SOLUTION_TAG in tags and stripper.gated_since is None:
                stripper.removed += 1
                continue
            source = stripper.markdown(cell.source, index)
            if source.strip():
                cells.append(_with_source(cell, source))
        elif stripper.gated_since is None:
            if SOLUTION_TAG in tags:
                stripper.removed += 1
            else:
                cells.append(copy.deepcopy(cell))
    if stripper.gated_since is not None:
        raise ValueError(f"{name}: cell {stripper.gated_since}: {{solution-start}} without a "
                         "matching {solution-end}")
    out = copy.deepcopy(nb)
    out.cells = cells
    return out, stripper.removed


def _with_source(cell: NotebookNode, source: str) -> NotebookNode:
    new = copy.deepcopy(cell)
    new.source = source
    return new


def clear_outputs(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` with every output, execution count and execution record removed."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "papermill", "scrolled"):
            cell.metadata.pop(key, None)
    out.metadata.pop("papermill", None)
    return out


def make_edition(src: Path, dst: Path, with_solutions: bool = False) -> EditionReport:
    """Write ``src``'s student (or, ``with_solutions``, instructor) edition to ``dst``."""
    try:
        nb = nbformat.read(src, as_version=4)
    except (ValueError, nbformat.ValidationError) as err:  # NotJSONError is a ValueError
        raise ValueError(f"{src}: not a readable notebook: {err}") from err
    removed = 0
    edition = clear_outputs(nb)
    if not with_solutions:
        edition, removed = strip_solutions(edition, name=str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(edition, dst)
    return EditionReport(src.name, len(nb.cells), len(edition.cells), removed)


def student_edition(out_dir: str | Path, notebooks: str | Path | None = None,
                    with_solutions: bool = False) -> list[EditionReport]:
    """Write the edition of every ``*.ipynb`` in ``notebooks`` (default: the repository's
    ``notebooks/``) to ``out_dir``; returns one report per notebook."""
    from xmrlib.utils import repo_root

    src_dir = Path(notebooks) if notebooks is not None else repo_root() / "notebooks"
    out_dir = Path(out_dir)
    sources = sorted(src_dir.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"{src_dir}: no chapter notebooks (*.ipynb) found")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a folder; choose an output folder")
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError(f"{out_dir}: the output folder is the notebooks folder; choose another "
                         "so the chapters are not overwritten")
    return [make_edition(src, out_dir / src.name, with_solutions) for src in sources]


def main(argv: list[str] | None = None) -> int:
    """Command line: ``student-edition OUT_DIR [--with-solutions] [--notebooks DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m xmrlib.classroom",
                                     description="Generate the classroom editions of the book.")
    sub = parser.add_subparsers(dest="command", required=True)
    ed = sub.add_parser("student-edition", help="chapter notebooks without solutions or outputs")
    ed.add_argument("out_dir", type=Path, help="folder to write the notebooks into")
    ed.add_argument("--with-solutions", action="store_true",
                    help="keep the solutions (instructor copy); outputs are still cleared")
    ed.add_argument("--notebooks", type=Path, default=None,
                    help="folder of the chapter notebooks (default: notebooks/ of the repository)")
    args = parser.parse_args(argv)
    try:
        reports = student_edition(args.out_dir, args.notebooks, args.with_solutions)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kind = "instructor" if args.with_solutions else "student"
    for r in reports:
        print(f"{r.name}: {r.cells_in} -> {r.cells_out} cells, {r.solutions_removed} solutions "
              "removed")
    print(f"{kind} edition of {len(reports)} notebooks written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

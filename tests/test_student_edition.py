"""The student edition of the real chapters: every exercise stub is followed by a visible checker
cell, and what a student may type into the stub (nothing yet, a typical wrong answer, a right
answer) gets the checker's verdict when the student copy's own checker cell runs."""

import ast
import io
from contextlib import redirect_stdout

import nbformat
import pytest

from xmrlib import classroom
from xmrlib.utils import repo_root

CHAPTERS = sorted(p.name[:2] for p in (repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Per stub (the names it defines): a typical wrong answer, the hint the checker must give for it,
# and a right answer, both written plainly as a student would.
ANSWERS = {
    ("t2i_recall",): ("""
def t2i_recall(sims, k, cpi=5):        # a fraction instead of percent
    hits = sum((sims[:, j] >= sims[j // cpi, j]).sum() <= k for j in range(sims.shape[1]))
    return hits / sims.shape[1]
""", "fraction", """
def t2i_recall(sims, k, cpi=5):
    hits = sum((sims[:, j] >= sims[j // cpi, j]).sum() <= k for j in range(sims.shape[1]))
    return 100.0 * hits / sims.shape[1]
"""),
    ("random_recall",): ("""
def random_recall(n_images, k, direction, cpi=5):   # K / N in both directions
    return 100.0 * k / n_images
""", "hypergeometric", """
import math
def random_recall(n_images, k, direction, cpi=5):
    if direction == "t2i":
        return 100.0 * min(k, n_images) / n_images
    m = cpi * n_images
    return 100.0 * (1 - math.comb(m - cpi, k) / math.comb(m, k))
"""),
    ("sum_hinge_loss",): ("""
def sum_hinge_loss(scores, margin=0.2):   # the diagonal is not excluded
    d = scores.diag()
    return ((margin - d[:, None] + scores).clamp(min=0).sum()
            + (margin - d[None, :] + scores).clamp(min=0).sum())
""", "diagonal", """
def sum_hinge_loss(scores, margin=0.2):
    total = 0.0
    for i in range(len(scores)):
        for k in range(len(scores)):
            if k != i:
                total = total + (margin - scores[i, i] + scores[i, k]).clamp(min=0)
                total = total + (margin - scores[i, i] + scores[k, i]).clamp(min=0)
    return total
"""),
    ("max_violation_loss",): ("""
def max_violation_loss(scores, margin=0.2):   # the positive competes with its negatives
    d = scores.diag()
    return ((margin - d[:, None] + scores).clamp(min=0).max(dim=1).values.sum()
            + (margin - d[None, :] + scores).clamp(min=0).max(dim=0).values.sum())
""", "mask the diagonal", """
import torch
def max_violation_loss(scores, margin=0.2):
    d, eye = scores.diag(), torch.eye(len(scores), dtype=torch.bool)
    rows = (margin - d[:, None] + scores).masked_fill(eye, 0).clamp(min=0)
    cols = (margin - d[None, :] + scores).masked_fill(eye, 0).clamp(min=0)
    return rows.max(dim=1).values.sum() + cols.max(dim=0).values.sum()
"""),
    ("lse_pool", "t2i_attention"): ("""
import torch
def t2i_attention(s, lambda_softmax):     # softmax over the words
    return torch.softmax(lambda_softmax * s, dim=0)
def lse_pool(r, lambda_lse):
    return torch.log(torch.exp(lambda_lse * r).sum(dim=-1)) / lambda_lse
""", "over the words", """
import torch
def t2i_attention(s, lambda_softmax):
    e = torch.exp(lambda_softmax * s)
    return e / e.sum(dim=1, keepdim=True)
def lse_pool(r, lambda_lse):
    return torch.log(torch.exp(lambda_lse * r).sum(dim=-1)) / lambda_lse
"""),
    ("mmca_score",): ("""
def mmca_score(i0, c0, i1, c1, alpha):    # alpha on the wrong term
    return alpha * i0 @ c0.T + i1 @ c1.T
""", "alpha weighs", """
def mmca_score(i0, c0, i1, c1, alpha):
    return i0 @ c0.T + alpha * i1 @ c1.T
"""),
    ("reverse",): ("""
def reverse(x, lambd):                   # forgets to reverse anything
    return x * 1.0
""", "passes unchanged", """
import torch
class Flip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.clone()
    @staticmethod
    def backward(ctx, grad):
        return -ctx.lambd * grad, None
def reverse(x, lambd):
    return Flip.apply(x, lambd)
"""),
    ("scored_pairs",): ("""
def scored_pairs(n_img, n_cap, k):       # shortlists longer than the gallery
    return k * (n_img + n_cap)
""", "more items than its gallery", """
def scored_pairs(n_img, n_cap, k):
    return n_img * min(k, n_cap) + n_cap * min(k, n_img)
"""),
}


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    """The student edition of the repository's chapters, generated as a teacher would."""
    out = tmp_path_factory.mktemp("student")
    classroom.student_edition(out)
    return {p.name[:2]: nbformat.read(p, as_version=4) for p in sorted(out.glob("*.ipynb"))}


def _defined(source: str) -> tuple[str, ...]:
    return tuple(sorted(n.name for n in ast.parse(source).body
                        if isinstance(n, (ast.FunctionDef, ast.ClassDef))))


def _checked(source: str) -> set[str]:
    """Names passed to a ``check_*`` call in ``source``."""
    return {a.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id.startswith("check_")
            for a in n.args if isinstance(a, ast.Name)}


def exercises(nb) -> list[tuple[str, str]]:
    """(stub source, checker source) for every stub; asserts that a visible checker cell that
    checks every name of the stub follows it before the next exercise."""
    pairs = []
    for i, cell in enumerate(nb.cells):
        if classroom.STUB_TAG not in cell.metadata.get("tags", []):
            continue
        names, checker = _defined(cell.source), None
        for later in nb.cells[i + 1:]:
            if "{exercise}" in later.source or classroom.STUB_TAG in later.metadata.get("tags", []):
                break
            if later.cell_type == "code" and set(names) <= _checked(later.source):
                checker = later
                break
        assert checker is not None, f"stub {names} is not followed by a check_ call on it"
        assert not {"remove-cell", "remove-input"} & set(checker.metadata.get("tags", [])), names
        pairs.append((cell.source, checker.source))
    return pairs


def run_cells(*sources: str) -> str:
    """Run cells in one fresh namespace, as a kernel would; what they printed."""
    namespace: dict = {}
    out = io.StringIO()
    with redirect_stdout(out):
        for source in sources:
            exec(compile(source, "<cell>", "exec"), namespace)  # noqa: S102 - our own cells
    return out.getvalue()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_stub_has_a_checker_that_gives_feedback(student_copy, chapter):
    nb = student_copy[chapter]
    pairs = exercises(nb)
    assert pairs, f"chapter {chapter}: no exercise stub in the student edition"
    for stub, checker in pairs:
        names = _defined(stub)
        assert names in ANSWERS, f"chapter {chapter}: no wrong answer written here for {names}"
        code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert all(code.count(f"def {n}(") + code.count(f"class {n}(") == 1 for n in names), \
            f"chapter {chapter}: the solution of {names} is still in the student copy"
        untouched = run_cells(stub, checker)
        assert "✗" in untouched and "NotImplementedError" in untouched, untouched
        wrong, hint, right = ANSWERS[names]
        feedback = run_cells(wrong, checker)
        assert "✗" in feedback and "expected" in feedback and hint in feedback, feedback
        passed = run_cells(right, checker)
        assert "✓" in passed and "✗" not in passed, passed


def test_student_copy_has_no_solutions(student_copy):
    for chapter, nb in student_copy.items():
        text = "\n".join(c.source for c in nb.cells)
        assert "{solution" not in text, chapter
        assert not any(classroom.SOLUTION_TAG in c.metadata.get("tags", []) for c in nb.cells)


def test_student_copy_uses_no_name_only_a_solution_defined(student_copy):
    """A student runs the copy top to bottom: no cell may use a name that only a removed
    solution defined (pyflakes over the code cells in order)."""
    from pyflakes import messages
    from pyflakes.checker import Checker

    for chapter, nb in student_copy.items():
        code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
        undefined = [m.message_args[0] for m in Checker(ast.parse(code)).messages
                     if isinstance(m, messages.UndefinedName)
                     and m.message_args[0] not in {"display", "get_ipython"}]
        assert not undefined, f"chapter {chapter}: {undefined}"

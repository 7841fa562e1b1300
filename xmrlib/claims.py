"""Checked verdicts: every comparison a chapter states in prose is computed or checked in the build.

A verdict in prose ("VSE++ is ahead of VSE0", "the curve is flat", "alpha 0.8 hurts") is written
for the numbers of one run; a rerun can reverse it. A chapter either glues the verdict words from
a computed comparison (:func:`compare_seeds`) or lists the sentence in a hidden cell with the
predicate on its results that makes it true (:class:`Claims`). On the ``default`` and ``full``
profiles a false predicate fails the chapter (and so the build) with the sentence to rewrite;
``smoke`` runs too little to order anything and skips the predicates. Every profile checks that
each listed sentence is still in the chapter's prose, so a claim cannot outlive its sentence.

    claims = Claims("03", profile)
    claims.add("a batch of 32 ends above a batch of 512",
               lambda: sweep.set_index("batch_size").loc[32, "rsum"] > sweep.set_index(
                   "batch_size").loc[512, "rsum"])
    claims.check()

:func:`audit` lists the sentences of a notebook whose typed text (glue roles removed) still
holds a verdict word and that no claim backs: the ones an author still has to glue or claim.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

#: Profiles on which predicates are evaluated; other profiles only check the prose.
CHECKED_PROFILES = ("default", "full")
#: Profiles whose false predicates fail the chapter: the published book's. On ``full`` (hours of
#: GPU time on real data, whose orderings the Shapes prose does not describe) a false predicate
#: warns (:class:`ClaimWarning`) and the run's results are kept.
STRICT_PROFILES = ("default",)
#: Words that make a sentence a comparative verdict (matched as word starts, case-insensitive).
VERDICT_WORDS = ("above", "below", "ahead", "behind", "beats", "outperform", "better", "worse",
                 "higher", "lower", "helps", "hurts", "improves", "faster", "slower", "flat",
                 "degenerat", "reproduc", "drops", "falls", "rises", "best", "worst", "close to",
                 "separable")
#: Default verdict words of :func:`compare_seeds`: better, worse, within the interval.
WORDS = ("ahead of", "behind", "not separable from")
_GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`[^`]*`")
_VERDICT_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in VERDICT_WORDS) + r")",
                         re.IGNORECASE)


class ClaimError(AssertionError):
    """A verdict in a chapter's prose that this run's results contradict (or that is missing)."""


class ClaimWarning(UserWarning):
    """A verdict in a chapter's prose that a ``full`` run's results contradict."""


# --------------------------------------------------------------------------- seed comparisons

@dataclass(frozen=True)
class SeedComparison:
    """Mean difference ``a - b`` over seeds with the half-width of its confidence interval.

    ``words`` is the verdict ("ahead of" when the interval lies above zero, "behind" below it,
    otherwise "not separable from"); ``str()`` adds the spread, e.g.
    ``"ahead of (+12.3 ± 4.1 over 3 seeds)"``; ``bool()`` is whether the two are separable.
    """

    diff: float
    half_width: float  # NaN with fewer than two seeds on a side: nothing can be separated
    n_a: int
    n_b: int
    sign: int  # +1 a ahead, -1 a behind, 0 not separable
    words: str
    precision: int = 1

    @property
    def ahead(self) -> bool:
        return self.sign > 0

    @property
    def behind(self) -> bool:
        return self.sign < 0

    @property
    def spread(self) -> str:
        """``"+12.3 ± 4.1 over 3 seeds"`` (``"+12.3, one seed"`` when there is no spread)."""
        p = self.precision
        seeds = (f"{self.n_a} seeds" if self.n_a == self.n_b
                 else f"{self.n_a} and {self.n_b} seeds")
        if math.isnan(self.half_width):
            return f"{self.diff:+.{p}f}, {'one seed' if self.n_a == self.n_b == 1 else seeds}"
        return f"{self.diff:+.{p}f} ± {self.half_width:.{p}f} over {seeds}"

    def __str__(self) -> str:
        return f"{self.words} ({self.spread})"

    def __bool__(self) -> bool:
        return self.sign != 0


def compare_seeds(a: Sequence[float], b: Sequence[float], *, paired: bool = False,
                  higher_is_better: bool = True, confidence: float = 0.95,
                  words: tuple[str, str, str] = WORDS, precision: int = 1) -> SeedComparison:
    """Compare a metric of two models over seeds and say it in words.

    ``a`` and ``b`` hold one value per seed (e.g. rsum). The verdict is ``words[0]`` when the
    ``confidence`` t-interval of ``mean(a) - mean(b)`` lies entirely on the better side of zero,
    ``words[1]`` when on the worse side, else ``words[2]``; ± is that interval's half-width.
    ``paired`` uses per-seed differences (``a[k]`` and ``b[k]`` share seed ``k``), otherwise
    Welch's interval. With one seed on a side nothing is separable.
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or y.ndim != 1 or not len(x) or not len(y):
        raise ValueError(f"compare_seeds: expected two non-empty 1-D samples, got shapes "
                         f"{x.shape} and {y.shape}")
    if not paired:
        sd = [float(v.std(ddof=1)) if len(v) > 1 else math.nan for v in (x, y)]
        return compare_summaries(float(x.mean()), sd[0], len(x), float(y.mean()), sd[1], len(y),
                                 higher_is_better=higher_is_better, confidence=confidence,
                                 words=words, precision=precision)
    if len(x) != len(y):
        raise ValueError(f"compare_seeds(paired=True): {len(x)} and {len(y)} values; paired "
                         "samples need one value per seed on both sides")
    d = x - y
    half = (stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
            if len(d) > 1 else math.nan)
    return _verdict(float(d.mean()), half, len(x), len(y), higher_is_better, words, precision)


def compare_summaries(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
                      *, higher_is_better: bool = True, confidence: float = 0.95,
                      words: tuple[str, str, str] = WORDS, precision: int = 1) -> SeedComparison:
    """:func:`compare_seeds` (Welch, unpaired) from each side's mean, sample sd and seed count,
    as a results table stores them (``rsum``, ``rsum_sd``, ``n_seeds``)."""
    from scipy import stats

    if min(n_a, n_b) < 2 or math.isnan(sd_a) or math.isnan(sd_b):
        half = math.nan
    else:
        va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
        se = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1)) if se else 1.0
        half = stats.t.ppf(0.5 + confidence / 2, dof) * se
    return _verdict(mean_a - mean_b, half, n_a, n_b, higher_is_better, words, precision)


def _verdict(diff: float, half: float, n_a: int, n_b: int, higher_is_better: bool,
             words: tuple[str, str, str], precision: int) -> SeedComparison:
    separable = not math.isnan(half) and abs(diff) > half
    sign = int(np.sign(diff)) * (1 if higher_is_better else -1) if separable else 0
    verdict = words[0] if sign > 0 else words[1] if sign < 0 else words[2]
    return SeedComparison(float(diff), float(half), n_a, n_b, sign, verdict, precision)


# --------------------------------------------------------------------------- claims

def _normalise(text: str) -> str:
    return " ".join(text.split())


def chapter_prose(notebook: str | Path) -> str:
    """The markdown of a notebook, whitespace collapsed (what claim sentences are matched in)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    return _normalise(" ".join("".join(c.get("source", "")) for c in nb.get("cells", [])
                               if c.get("cell_type") == "markdown"))


def _find_notebook(chapter: str) -> Path | None:
    """``NN_*.ipynb`` in the working directory (papermill and Jupyter run a chapter from its
    folder), else in the repository's ``notebooks/``; None when neither has it."""
    from xmrlib.utils import repo_root

    for folder in (Path.cwd(), repo_root() / "notebooks"):
        hits = sorted(folder.glob(f"{chapter}_*.ipynb"))
        if hits:
            return hits[0]
    return None


def _describe(predicate: Callable[[], object]) -> str:
    """The source line(s) of a predicate, for the error message (empty when unavailable)."""
    try:
        return _normalise(inspect.getsource(predicate))
    except (OSError, TypeError):
        return ""


@dataclass
class _Claim:
    sentence: str
    holds: bool | Callable[[], object]
    when: bool


class Claims:
    """The verdict sentences of one chapter, each with the predicate that makes it true.

    ``Claims(chapter, profile)`` finds the chapter's notebook ``NN_*.ipynb`` (working directory,
    then ``notebooks/``) to check that each sentence is in its prose; pass ``notebook=`` to
    check another file, or ``notebook=False`` to skip the prose check.
    """

    def __init__(self, chapter: str, profile: str, notebook: str | Path | bool | None = None):
        self.chapter, self.profile = chapter, profile
        if notebook is None:
            notebook = _find_notebook(chapter) or False
        self.notebook = Path(notebook) if notebook is not False else None
        self._claims: list[_Claim] = []

    def add(self, sentence: str, holds: bool | Callable[[], object], *, when: bool = True) -> None:
        """Register ``sentence`` (as written in the markdown, or a distinctive part of it) with
        ``holds``: a bool, or a callable evaluated only on checked profiles (so a predicate that
        needs results the smoke run lacks does not run there). ``when=False`` marks a sentence
        that does not apply to this run (e.g. a Shapes-only remark on real data)."""
        if not sentence.strip():
            raise ValueError("Claims.add: empty sentence")
        self._claims.append(_Claim(sentence, holds, when))

    def check(self) -> pd.DataFrame:
        """Evaluate the claims; return a table (sentence, status, predicate) or raise
        :class:`ClaimError` naming every sentence that is missing from the prose or false. On a
        profile outside :data:`STRICT_PROFILES` (``full``) false sentences only warn
        (:class:`ClaimWarning`); a sentence missing from the prose always raises."""
        prose = chapter_prose(self.notebook) if self.notebook is not None else None
        rows, problems, false = [], [], []
        evaluate = self.profile in CHECKED_PROFILES
        for c in self._claims:
            source = _describe(c.holds) if callable(c.holds) else ""
            if prose is not None and _normalise(c.sentence) not in prose:
                status = "not in the prose"
                problems.append(f'  - "{c.sentence}": not found in {self.notebook.name} '
                                "(the sentence was edited: update the claim)")
            elif not c.when:
                status = "not applicable"
            elif not evaluate:
                status = f"skipped ({self.profile} profile)"
            else:
                value = c.holds() if callable(c.holds) else c.holds
                status = "holds" if value else "FALSE"
                if not value:
                    detail = f" [{source}]" if source else f" [{value!r}]"
                    false.append(f'  - "{c.sentence}"{detail}')
            rows.append({"sentence": c.sentence, "status": status, "predicate": source})
        table = pd.DataFrame(rows, columns=["sentence", "status", "predicate"])
        if false and self.profile not in STRICT_PROFILES:
            warnings.warn(ClaimWarning(
                f"chapter {self.chapter}, {self.profile} profile: {len(false)} verdict(s) in the "
                "prose (written for the default Shapes runs) do not hold for this run; its "
                "results are kept, read its tables rather than these sentences:\n"
                + "\n".join(false)), stacklevel=2)
            false = []
        if problems or false:
            raise ClaimError(
                f"chapter {self.chapter}, {self.profile} profile: {len(problems + false)} "
                "verdict(s) in the prose do not hold for this run; rewrite each sentence (or "
                "glue its verdict from a computed comparison) and update its claim:\n"
                + "\n".join(problems + false))
        return table


# --------------------------------------------------------------------------- audit

def _claimed_sentences(nb: dict) -> list[str]:
    """String literals passed first to an ``.add(...)`` call in the notebook's code cells."""
    found = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell.get("source", "")))
        except SyntaxError:  # IPython magics: not a claims cell
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add" and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                found.append(_normalise(node.args[0].value))
    return found


def audit(notebook: str | Path) -> list[str]:
    """Sentences of a notebook's prose whose typed text (glue roles removed) holds a verdict word
    (:data:`VERDICT_WORDS`) and that no claim backs. Advisory: "the table above" is listed too."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    claimed = _claimed_sentences(nb)
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        text = re.sub(r"```.*?```|\$\$.*?\$\$", " ", "".join(cell.get("source", "")), flags=re.S)
        # paragraphs, headings and list items are separate blocks; then sentences
        for block in re.split(r"\n\s*\n|\n(?=\s*(?:#+|[*-]|\d+\.)\s)", text):
            for sentence in re.split(r"(?<=[.!?])\s+", _normalise(block)):
                typed = _GLUE_ROLE.sub(" ", sentence)
                if _VERDICT_RE.search(typed) and not any(c in sentence for c in claimed):
                    out.append(sentence)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xmrlib.claims NOTEBOOK ...``: print each notebook's unbacked verdicts."""
    import sys

    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m xmrlib.claims NOTEBOOK [NOTEBOOK ...]", file=sys.stderr)
        return 2
    for path in paths:
        found = audit(path)
        print(f"{path}: {len(found)} verdict sentence(s) neither glued nor claimed")
        for sentence in found:
            print(f"  - {sentence}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Checked verdicts (xmrlib.claims): seed comparisons in words, claims per profile, audit."""

import math

import nbformat
import pytest

from xmrlib.claims import ClaimError, Claims, ClaimWarning, audit, compare_seeds

T_975_DF2 = 4.302652729749464  # Student t, 97.5 % quantile, 2 degrees of freedom (tables)
T_975_DF4 = 2.7764451051977987  # ... 4 degrees of freedom


def test_compare_seeds_paired_interval_by_hand():
    # per-seed differences 3, 4, 5: mean 4, sd 1, half-width t(2) * 1 / sqrt(3) = 2.48
    c = compare_seeds([13.0, 14.0, 15.0], [10.0, 10.0, 10.0], paired=True)
    assert c.diff == pytest.approx(4.0)
    assert c.half_width == pytest.approx(T_975_DF2 / math.sqrt(3))
    assert c.ahead and not c.behind and bool(c)
    assert str(c) == "ahead of (+4.0 ± 2.5 over 3 seeds)"
    # differences 1, 2, 3: mean 2 within the same half-width
    assert compare_seeds([11.0, 12.0, 13.0], [10.0, 10.0, 10.0], paired=True).sign == 0
    # differences -1, 2, 1: mean 0.67 with a half-width of 3.8: the interval holds zero
    c = compare_seeds([9.0, 12.0, 11.0], [10.0, 10.0, 10.0], paired=True)
    assert c.words == "not separable from" and not c
    assert str(c) == "not separable from (+0.7 ± 3.8 over 3 seeds)"


def test_compare_seeds_welch_equal_variances_by_hand():
    # equal n and variances: Welch's degrees of freedom are 2 (n - 1) = 4, se = sqrt(4/3 + 4/3)
    c = compare_seeds([0.0, 2.0, 4.0], [10.0, 12.0, 14.0])
    assert c.diff == -10.0
    assert c.half_width == pytest.approx(T_975_DF4 * math.sqrt(8 / 3))
    assert c.behind and str(c) == "behind (-10.0 ± 4.5 over 3 seeds)"


def test_compare_seeds_lower_is_better_one_seed_and_custom_words():
    # a median rank: lower is better, so a smaller value is ahead
    c = compare_seeds([2.0, 2.0, 3.0], [9.0, 10.0, 11.0], higher_is_better=False,
                      words=("better than", "worse than", "level with"))
    assert c.words == "better than" and c.diff < 0
    one = compare_seeds([50.0], [47.0])
    assert math.isnan(one.half_width) and one.sign == 0
    assert str(one) == "not separable from (+3.0, one seed)"
    with pytest.raises(ValueError, match="paired"):
        compare_seeds([1.0, 2.0], [1.0], paired=True)
    with pytest.raises(ValueError, match="non-empty"):
        compare_seeds([], [1.0])


def _notebook(tmp_path, prose, code=""):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(prose)]
    if code:
        nb.cells.append(nbformat.v4.new_code_cell(code))
    path = tmp_path / "03_demo.ipynb"
    nbformat.write(nb, path)
    return path


PROSE = ("## Results\n\nOn this run VSE++ ends\nbelow VSE0 in rsum. The curve is flat after "
         "epoch 2. VSE++ is {glue:text}`verdict` VSE0.")


def test_false_claim_on_default_names_the_sentence(tmp_path):
    nb = _notebook(tmp_path, PROSE)
    rsum = {"VSE0": 170.0, "VSE++": 180.0}
    claims = Claims("03", "default", notebook=nb)
    claims.add("VSE++ ends below VSE0 in rsum", lambda: rsum["VSE++"] < rsum["VSE0"])
    claims.add("The curve is flat after epoch 2.", True)
    with pytest.raises(ClaimError) as err:
        claims.check()
    msg = str(err.value)
    assert '"VSE++ ends below VSE0 in rsum"' in msg and "chapter 03, default profile" in msg
    assert 'rsum["VSE++"] < rsum["VSE0"]' in msg  # the predicate's source is quoted
    assert "flat" not in msg  # the true claim is not listed
    rsum["VSE++"] = 160.0
    table = claims.check()
    assert list(table["status"]) == ["holds", "holds"]
    # full: hours of GPU time on real data; a false verdict warns and keeps the results
    full = Claims("03", "full", notebook=nb)
    full.add("The curve is flat after epoch 2.", False)
    with pytest.warns(ClaimWarning, match="flat after epoch 2"):
        assert list(full.check()["status"]) == ["FALSE"]
    full.add("a sentence that was rewritten", True)  # missing from the prose: still an error
    with pytest.raises(ClaimError, match="a sentence that was rewritten"):
        full.check()


def test_smoke_skips_predicates_but_not_the_prose(tmp_path):
    nb = _notebook(tmp_path, PROSE)

    def never_called():
        raise AssertionError("a smoke run must not evaluate predicates")

    claims = Claims("03", "smoke", notebook=nb)
    claims.add("VSE++ ends below VSE0 in rsum", never_called)
    claims.add("The curve is flat after epoch 2.", False)
    claims.add("a sentence that was rewritten", True)
    with pytest.raises(ClaimError, match="a sentence that was rewritten.*not found in 03_demo"):
        claims.check()
    claims._claims.pop()
    statuses = list(claims.check()["status"])
    assert statuses[:2] == ["skipped (smoke profile)"] * 2
    no_prose = Claims("03", "default", notebook=False)
    no_prose.add("anything", True)
    no_prose.add("only on Shapes", False, when=False)
    assert list(no_prose.check()["status"]) == ["holds", "not applicable"]


def test_audit_lists_typed_verdicts_that_no_claim_backs(tmp_path):
    code = 'claims = Claims("03", profile)\nclaims.add("The curve is flat after epoch 2.", True)'
    nb = _notebook(tmp_path, PROSE + "\n\n* The paper finds VSE++ ahead.\n* Nothing to see.", code)
    found = audit(nb)
    assert found == ["On this run VSE++ ends below VSE0 in rsum.", "* The paper finds VSE++ ahead."]


def test_claims_find_the_chapter_in_the_working_directory(tmp_path, monkeypatch):
    _notebook(tmp_path, PROSE)  # 03_demo.ipynb, as papermill runs a chapter from its folder
    monkeypatch.chdir(tmp_path)
    claims = Claims("03", "default")
    assert claims.notebook == tmp_path / "03_demo.ipynb"
    claims.add("not in this chapter", True)
    with pytest.raises(ClaimError, match="not found in 03_demo.ipynb"):
        claims.check()


def test_compare_summaries_is_welch_from_table_columns():
    from xmrlib.claims import compare_summaries

    c = compare_summaries(2.0, 2.0, 3, 12.0, 2.0, 3)  # the samples 0, 2, 4 and 10, 12, 14
    assert c.half_width == pytest.approx(T_975_DF4 * math.sqrt(8 / 3))
    assert str(c) == "behind (-10.0 ± 4.5 over 3 seeds)"
    assert compare_summaries(50.0, float("nan"), 1, 40.0, float("nan"), 1).sign == 0

"""The teaching page's exercise times: numbered through the book, summed from papermill's
per-cell durations of each exercise's cells (xmrlib.book.exercise_times)."""

import json
import math

from xmrlib.book import exercise_times, exercise_times_markdown


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(seconds, tags=()):
    meta = {"tags": list(tags)}
    if seconds is not None:
        meta["papermill"] = {"duration": seconds}
    return {"cell_type": "code", "metadata": meta, "source": "pass", "outputs": []}


def _write(path, cells):
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}), encoding="utf-8")
    return path


def test_exercise_times_number_through_the_book_and_sum_each_exercise(tmp_path):
    one = _write(tmp_path / "01_a.ipynb", [
        _md("# 1. A"), _code(9.0),                                     # body: not an exercise
        _md("## Exercises\n\n```{exercise} First one\n:label: ex-a1\n\nText.\n```"),
        _code(0.5, ["exercise-stub", "remove-cell"]), _code(2.0), _code(0.25),
        _md("```{exercise}\n:class: hard\n:label: ex-a2\n\nNo title.\n```"), _code(4.0),
        _code(7.0, ["remove-cell"]),                                   # a hidden claims cell
        _md("## References"), _code(100.0)])
    two = _write(tmp_path / "02_b.ipynb", [
        _md("```{exercise} Second chapter\n:label: ex-b1\n```"), _code(1.5), _code(None)])
    df = exercise_times({"01": one, "02": two})
    assert df["number"].tolist() == [1, 2, 3]
    assert df["label"].tolist() == ["ex-a1", "ex-a2", "ex-b1"]
    assert df["title"].tolist() == ["First one", "", "Second chapter"]
    assert df["seconds"].iloc[0] == 2.25        # the stub is hidden (remove-cell): 2.0 + 0.25
    assert df["seconds"].iloc[1] == 4.0         # stops at the References heading
    assert math.isnan(df["seconds"].iloc[2])    # a cell without a duration: not measured
    md = exercise_times_markdown(df, "smoke", "shapes", "cpu")
    assert "`smoke` profile on shapes, cpu" in md
    assert "| 1. First one | 1 | `ex-a1` | 2.2 |" in md and "| 3. Second chapter | 2 | `ex-b1` | not run |" in md

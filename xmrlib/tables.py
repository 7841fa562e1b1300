"""Results tables of the book: paper rows and our runs (mean ± sd over seeds), labelled apart.

Every function takes metric dicts or :mod:`xmrlib.papers` frames and returns a
``pandas.DataFrame`` (or its HTML ``Styler``); nothing here reads or writes files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: metric columns of a results table, in the order of Kiros' tables.
DEFAULT_COLUMNS: tuple[str, ...] = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr",
                                    "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "rsum")


def _metric_rows(entry: Mapping[str, float] | Sequence[Mapping[str, float]]) -> list[Mapping]:
    return [entry] if isinstance(entry, (Mapping, pd.Series)) else list(entry)


def results_table(ours: Mapping[str, Mapping[str, float] | Sequence[Mapping[str, float]]],
                  paper: pd.DataFrame | None = None, columns: Sequence[str] = DEFAULT_COLUMNS,
                  *, profile: str, dataset: str, seed: int | Sequence[int] = 0,
                  counterparts: Mapping[str, str] | None = None,
                  protocol: str | None = None) -> pd.DataFrame:
    """Paper rows and our rows in one table, each labelled with where it comes from.

    ``ours`` maps a method name to one metrics dict (one run, seed ``seed``) or to a list of
    metrics dicts (one per seed, the first ones of ``seed``: a method may have fewer runs than
    ``seed`` names): then the row holds the mean and ``<col>_sd`` the sample standard deviation. ``paper`` is a frame of :mod:`xmrlib.papers` rows (needs columns
    ``paper_name``, ``dataset``, ``table``, ``method``). Paper rows come first and are labelled
    ``"paper: <name>, <dataset>, <table>"``; ours ``"ours: <profile>, <dataset>, seed s"`` (or
    ``"seeds a, b, c (mean ± sd)"``). Columns: ``source`` (``paper``/``ours``), ``label``,
    ``method``, the metric ``columns``, then ``n_seeds``, ``<col>_sd``, ``paper_row`` and
    ``protocol`` (read by :mod:`xmrlib.report`).

    ``paper_row`` holds a paper row's id (its ``row_id``) and, for a row of ours, the id of the
    paper row named by ``counterparts[method]`` (a ``method`` of ``paper``), else "" (the report
    then pairs it with the paper row of the same method, if any). ``protocol`` labels our rows'
    evaluation when it is not the profile's (e.g. ``"200 test images"``); paper rows carry theirs.
    """
    columns = list(columns)
    rows: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    if paper is not None:
        missing = [c for c in ("paper_name", "dataset", "table", "method") if c not in paper]
        if missing:
            raise ValueError(f"results_table: paper frame lacks columns {missing}; expected rows "
                             "of xmrlib.papers.paper_rows/paper_table")
        if "row_id" in paper:
            ids = dict(zip(paper["method"], paper["row_id"]))
        for _, p in paper.iterrows():
            rows.append({"source": "paper", "method": p["method"],
                         "label": f"paper: {p['paper_name']}, {p['dataset']}, {p['table']}",
                         **{c: p.get(c, np.nan) for c in columns},
                         "paper_row": p.get("row_id", ""), "protocol": p.get("protocol", "")})
    counterparts = dict(counterparts or {})
    unknown = {m: p for m, p in counterparts.items() if m not in ours or p not in ids}
    if unknown:
        raise ValueError(f"results_table: counterparts {unknown} name a method missing from ours "
                         f"or a paper method without a row_id in the paper frame ({sorted(ids)})")
    seeds = [seed] if isinstance(seed, int) else list(seed)
    for method, entry in ours.items():
        runs = _metric_rows(entry)
        if not runs or len(runs) > len(seeds):
            raise ValueError(f"results_table: method {method!r} has {len(runs)} metric dicts but "
                             f"seed={seed!r} names {len(seeds)} seed(s)")
        row_seeds = seeds[:len(runs)]  # a method run on fewer seeds: the first ones
        for c in columns:
            if any(c not in r for r in runs):
                raise KeyError(f"results_table: method {method!r} lacks metric {c!r}")
        values = np.array([[float(r[c]) for c in columns] for r in runs])  # (n_seeds, n_cols)
        if len(runs) == 1:
            label = f"ours: {profile}, {dataset}, seed {row_seeds[0]}"
            sd = np.full(len(columns), np.nan)
        else:
            label = (f"ours: {profile}, {dataset}, seeds {', '.join(map(str, row_seeds))} "
                     "(mean ± sd)")
            sd = values.std(axis=0, ddof=1)
        row = {"source": "ours", "label": label, "method": method,
               **dict(zip(columns, values.mean(axis=0))), "n_seeds": len(runs)}
        row.update({f"{c}_sd": s for c, s in zip(columns, sd)})
        counterpart = counterparts.get(method)
        row.update(paper_row=ids[counterpart] if counterpart else "", protocol=protocol or "")
        rows.append(row)
    order = ["source", "label", "method", *columns, "n_seeds", *[f"{c}_sd" for c in columns],
             "paper_row", "protocol"]
    return pd.DataFrame(rows, columns=order)


def column_title(column: str) -> str:
    """A metric column as a reader reads it: ``i2t_r1`` -> ``"i→t R@1"``, ``t2i_medr`` ->
    ``"t→i med r"``; other names unchanged."""
    direction, _, metric = column.partition("_")
    arrow = {"i2t": "i→t", "t2i": "t→i"}.get(direction)
    if arrow is None or not metric:
        return column
    return f"{arrow} " + ("med r" if metric == "medr" else re.sub(r"^r(\d+)$", r"R@\1", metric))


def style_results(table: pd.DataFrame, precision: int = 1,
                  columns: Sequence[str] | None = None) -> Any:
    """An HTML ``Styler`` of a :func:`results_table` in labelled blocks: each source (``paper:
    name, dataset, table`` or ``ours: profile, dataset, seeds``) is written once, beside the
    first of its rows; cells are ``mean ± sd``, paper rows shaded, headers as
    :func:`column_title` writes them.

    ``columns`` picks and orders the metric columns (default: every column with an ``_sd``
    column); the ``_sd`` and ``n_seeds`` columns are folded into the displayed cells.
    """
    metric_cols = (list(columns) if columns is not None
                   else [c for c in table.columns if f"{c}_sd" in table.columns])
    shown = pd.DataFrame({column_title(c): [_fmt(m, s, precision) for m, s in
                                            zip(table[c], table[f"{c}_sd"])]
                          for c in metric_cols})
    shown.index = pd.MultiIndex.from_arrays([table["label"], table["method"]],
                                            names=["source", "method"])
    paper = (table["source"] == "paper").to_numpy()

    def shade(column: pd.Series) -> list[str]:
        return ["background-color: #f2f2f2" if p else "" for p in paper]

    return shown.style.apply(shade, axis=0)


def _fmt(mean: float, sd: float, precision: int) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{precision}f}" + ("" if pd.isna(sd) else f" ± {sd:.{precision}f}")


def mean_sd_table(runs: Sequence[Mapping[str, float]],
                  columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, sample sd (ddof=1; NaN for one run) and count of each metric over runs (seeds).

    Returns a frame indexed by metric with columns ``mean``, ``sd``, ``n``.
    """
    if not runs:
        raise ValueError("mean_sd_table: no runs given")
    columns = list(columns) if columns is not None else list(runs[0])
    values = pd.DataFrame([{c: float(r[c]) for c in columns} for r in runs])
    return pd.DataFrame({"mean": values.mean(), "sd": values.std(ddof=1),
                         "n": len(runs)}).rename_axis("metric")


def mean_sd(runs: Sequence[Mapping[str, float]], key: str = "rsum", scale: float = 1.0) -> str:
    """``"368.2 ± 10.1"``: mean and sample sd of ``key`` times ``scale`` over runs (seeds), the
    value alone for one run, as the chapters write them in prose; a run without ``key`` (binding
    accuracy on real data) counts as NaN."""
    if not runs:
        raise ValueError("mean_sd: no runs given")
    v = scale * np.array([float(m.get(key, np.nan)) for m in runs])
    return f"{v.mean():.1f}" + (f" ± {v.std(ddof=1):.1f}" if len(v) > 1 else "")

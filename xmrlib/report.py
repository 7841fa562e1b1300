"""The paper-vs-run report: every saved table that names a paper row, beside the paper's value.

A table saved with :func:`xmrlib.results.save_table` joins the report when it has a ``paper_row``
column holding a row id of :mod:`xmrlib.papers`; optional ``features`` / ``protocol`` columns
override the run's values for that row. A delta is printed only when dataset, features and
protocol match the paper's row (never on Shapes). ``python -m xmrlib.reproduce report`` writes
``results/report.md`` and ``results/report.csv``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from xmrlib.config import COMMON
from xmrlib.results import ReproduceError, read_run_json, results_root
from xmrlib.utils import atomic_write_text

#: Metric columns that the report compares (flat names, as everywhere in xmrlib).
METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr",
           "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr", "rsum")
#: Paper dataset names (``xmrlib.papers``) of our real datasets.
PAPER_DATASET = {"f30k_precomp": "Flickr30K", "coco_precomp": "MS-COCO"}


def _comparable(paper: pd.Series, dataset: str, features: str | None, protocol: str | None) -> bool:
    return (PAPER_DATASET.get(dataset) == paper["dataset"] and features == paper["features"]
            and protocol == paper["protocol"])


def build_report(root: Path | None = None) -> pd.DataFrame:
    """Paper-vs-run rows for every saved table that names ``paper_row`` ids (long format)."""
    from xmrlib.papers import paper_rows

    root = root or results_root()
    papers = paper_rows().set_index("row_id")
    rows = []
    for run_json in sorted(root.glob("*/*/*/run.json")):
        info = read_run_json(run_json)
        params = info.get("parameters", {})
        for csv in sorted(run_json.parent.glob("*.csv")):
            try:
                table = pd.read_csv(csv)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise ReproduceError(f"{csv}: not a readable results table ({exc}); re-run "
                                     f"chapter {info['chapter']} with --force") from exc
            if "paper_row" not in table.columns:
                continue
            for _, ours in table.iterrows():
                if pd.isna(ours["paper_row"]) or not str(ours["paper_row"]).strip():
                    continue  # a row of ours with no paper counterpart
                if ours["paper_row"] not in papers.index:
                    raise ReproduceError(f"{csv}: paper_row {ours['paper_row']!r} is not a row "
                                         "id of xmrlib.papers")
                paper = papers.loc[ours["paper_row"]]
                features = ours.get("features", info.get("data", {}).get("features"))
                protocol = ours.get("protocol", params.get("protocol")
                                    or COMMON.get(info.get("profile"), {}).get("protocol"))
                same = _comparable(paper, info["dataset"], features, protocol)
                for metric in METRICS:
                    if metric not in table.columns or pd.isna(paper.get(metric)):
                        continue
                    mine = ours[metric]
                    rows.append({
                        "chapter": info["chapter"], "table": csv.stem,
                        "paper": paper["paper_name"], "paper_table": paper["table"],
                        "paper_row": paper["method"],
                        "paper_setting": f"{paper['dataset']} {paper['protocol']}, "
                                         f"{paper['features']}",
                        "run": ours.get("label", ours.get("method", "")),
                        "run_setting": f"{info['dataset']} {protocol}, {features}, "
                                       f"{info['profile']} profile, seed {info['seed']}",
                        "metric": metric, "paper_value": float(paper[metric]),
                        "our_value": float(mine),
                        "delta": round(float(mine) - float(paper[metric]), 2) if same else None,
                    })
    return pd.DataFrame(rows, columns=["chapter", "table", "paper", "paper_table", "paper_row",
                                       "paper_setting", "run", "run_setting", "metric",
                                       "paper_value", "our_value", "delta"])


def report_markdown(df: pd.DataFrame) -> str:
    """Markdown of the report table (deltas shown only where the settings match)."""
    if df.empty:
        return ("No reproduced table names a paper row yet: run "
                "`python -m xmrlib.reproduce run` first.\n")
    shown = df.copy()
    shown["delta"] = shown["delta"].map(lambda v: "n/a (setting differs)" if pd.isna(v)
                                        else f"{v:+.2f}")
    shown["our_value"] = shown["our_value"].map(lambda v: f"{v:.2f}")
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n"
                   for row in shown.itertuples(index=False))
    return header + body


def write_report(root: Path | None = None) -> tuple[Path, Path, pd.DataFrame]:
    """Write ``report.md`` and ``report.csv`` at the results root; return their paths and table."""
    root = root or results_root()
    df = build_report(root)
    md, csv = root / "report.md", root / "report.csv"
    atomic_write_text(md, report_markdown(df))
    atomic_write_text(csv, df.to_csv(index=False))
    return md, csv, df

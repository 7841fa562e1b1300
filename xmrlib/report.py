"""The paper-vs-run report: our rows beside the papers' rows they reproduce, one block per table.

A chapter table (saved with ``save_table``) joins the report when it compares with a paper:

* a ``source`` column, when present, says whose each row is: ``paper`` rows name the paper rows
  the chapter shows (their ``paper_row`` id, or for older tables the ``paper: <paper>,
  <dataset>, <table>`` label and ``method`` of :func:`xmrlib.tables.results_table`); ``ours``
  rows are runs; any other value (``expected``, ``analytic`` ...) is neither. Without a
  ``source`` column every row is ours.
* an our row's ``paper_row`` names its counterpart (an :mod:`xmrlib.papers` row id); without
  one, a paper row of the same table with the same ``method`` is its counterpart.
* optional ``features`` / ``protocol`` columns override the run's values for that row.

Values always come from :mod:`xmrlib.papers` for the paper side and from our rows for ours: a
paper row is never read as a run. A difference is given only where dataset, features and
protocol match the paper row's (never on Shapes). The verdict of a block compares the ordering of
our paired rows with the paper's ordering of their counterparts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from xmrlib.config import COMMON
from xmrlib.results import ReproduceError, read_run_json, results_root
from xmrlib.utils import atomic_write_text

#: Recall columns of the compact tables (image-to-text, then text-to-image), then rsum.
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
#: Metrics of the long CSV.
METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr",
           "rsum")
#: Paper dataset names (``xmrlib.papers``) of our real datasets.
PAPER_DATASET = {"f30k_precomp": "Flickr30K", "coco_precomp": "MS-COCO"}
#: Dataset names as the page prints them.
DATASET_NAMES = {"shapes": "Shapes", "f30k_precomp": "Flickr30K", "coco_precomp": "MS-COCO"}
#: Profiles whose results are committed and summarised in ``results/report.md``.
REPORTED_PROFILES = ("default", "full")
_LABEL_RE = re.compile(r"^paper: (?P<name>.+), (?P<dataset>[^,]+), (?P<table>Table \w+)$")
_SEEDS_RE = re.compile(r"\bseeds? (\d+(?:, \d+)*)")


@dataclass
class OurRow:
    """One row of ours in a comparison block."""

    name: str
    values: dict[str, float]
    sd: dict[str, float]
    n_seeds: int
    seeds: str                # "0" or "0, 1, 2"
    counterpart: str | None   # row id in xmrlib.papers
    dataset: str
    protocol: str
    features: str
    profile: str

    @property
    def seed_text(self) -> str:
        return f"seed {self.seeds}" if self.n_seeds == 1 else f"mean of seeds {self.seeds}"

    @property
    def setting(self) -> str:
        """Data set, protocol, features, profile and seeds, e.g. for the page's summary."""
        return (f"{DATASET_NAMES.get(self.dataset, self.dataset)} {self.protocol}, "
                f"{self.features} features, {self.profile} profile, {self.seed_text}")

    @property
    def short_setting(self) -> str:
        """The setting in a table cell (the profile is in the block's caption)."""
        return (f"{DATASET_NAMES.get(self.dataset, self.dataset)} {self.protocol}, "
                f"{self.features}, {self.seed_text}")


@dataclass
class Block:
    """Our rows of one chapter table beside the rows of one paper table."""

    chapter: str
    csv: str
    paper: str                 # key of xmrlib.papers.PAPERS
    table: str                 # e.g. "Table 2"
    paper_rows: pd.DataFrame   # xmrlib.papers rows, in the paper's order
    ours: list[OurRow] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.paper_rows['paper_name'].iloc[0]} {self.table}"


def _is_set(value: Any) -> bool:
    return not (value is None or (isinstance(value, float) and math.isnan(value))
                or not str(value).strip())


def _resolve_paper(row: pd.Series, papers: pd.DataFrame, csv: Path) -> str:
    """Row id of a chapter table's paper row: its ``paper_row``, else its label and method."""
    if "paper_row" in row and _is_set(row["paper_row"]):
        return _check_id(str(row["paper_row"]), papers, csv)
    m = _LABEL_RE.match(str(row.get("label", "")))
    hit = papers.iloc[:0]
    if m:
        hit = papers[(papers["paper_name"] == m["name"]) & (papers["dataset"] == m["dataset"])
                     & (papers["table"] == m["table"]) & (papers["method"] == row.get("method"))]
    if len(hit) != 1:
        raise ReproduceError(f"{csv}: paper row {row.get('label')!r} / {row.get('method')!r} "
                             "names no single row of xmrlib.papers; give it a paper_row id")
    return str(hit.index[0])


def _check_id(row_id: str, papers: pd.DataFrame, csv: Path) -> str:
    """A ``paper_row`` id as it is now (:data:`xmrlib.papers.RENAMED_ROWS`), or an error."""
    from xmrlib.papers import RENAMED_ROWS

    row_id = RENAMED_ROWS.get(row_id, row_id)
    if row_id not in papers.index:
        raise ReproduceError(f"{csv}: paper_row {row_id!r} is not a row id of xmrlib.papers")
    return row_id


def _our_name(row: pd.Series) -> str:
    if "method" in row and _is_set(row["method"]):
        return str(row["method"])
    parts = [str(row[c]) for c in ("model", "setting", "ablation") if c in row and _is_set(row[c])]
    return ", ".join(parts) or str(row.get("label", "?"))


def _run_protocol(info: dict[str, Any]) -> str:
    """The protocol of a run: its parameter, else the profile's; on Shapes, "1k" (the whole test
    split) becomes the test size when the profile's split is not 1000 images."""
    common = COMMON.get(info["profile"], {})
    protocol = info.get("parameters", {}).get("protocol") or common.get("protocol", "?")
    n_test = common.get("n_test")
    if info["dataset"] == "shapes" and protocol == "1k" and n_test not in (None, 1000):
        return f"{n_test} test images"
    return protocol


def _our_row(row: pd.Series, info: dict[str, Any], counterpart: str | None) -> OurRow:
    n = int(row["n_seeds"]) if "n_seeds" in row and _is_set(row["n_seeds"]) else 1
    seeds = _SEEDS_RE.search(str(row.get("label", "")))
    if "protocol" in row and _is_set(row["protocol"]):
        protocol = str(row["protocol"])
    else:
        protocol = _run_protocol(info)
    features = row["features"] if "features" in row and _is_set(row["features"]) else (
        info.get("data", {}).get("features", "?"))
    return OurRow(
        name=_our_name(row),
        values={m: float(row[m]) for m in METRICS if m in row and _is_set(row[m])},
        sd={m: float(row[f"{m}_sd"]) for m in METRICS
            if f"{m}_sd" in row and _is_set(row[f"{m}_sd"])},
        n_seeds=n, seeds=seeds.group(1) if seeds else str(info["seed"]),
        counterpart=counterpart, dataset=info["dataset"], protocol=protocol,
        features=str(features), profile=info["profile"])


def _check_not_a_copy(ours: OurRow, paper: pd.Series, csv: Path) -> None:
    """An our row holding exactly its paper row's recalls is a paper row saved as ours."""
    shared = [m for m in RECALLS if m in ours.values and not math.isnan(paper[m])]
    if len(shared) >= 3 and all(round(ours.values[m], 1) == paper[m] for m in shared):
        raise ReproduceError(f"{csv}: the row {ours.name!r} holds exactly the recalls of paper "
                             f"row {paper.name!r}: a paper row saved as ours? Give paper rows "
                             "source = 'paper'")


def _table_blocks(csv: Path, info: dict[str, Any], papers: pd.DataFrame) -> list[Block]:
    """The comparison blocks of one chapter table (none when it names no paper row)."""
    try:
        table = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReproduceError(f"{csv}: not a readable results table ({exc}); re-run chapter "
                             f"{info['chapter']} with --force") from exc
    if "source" in table.columns:
        shown, mine = table[table["source"] == "paper"], table[table["source"] == "ours"]
    else:
        shown, mine = table.iloc[:0], table
    shown_ids = [_resolve_paper(r, papers, csv) for _, r in shown.iterrows()]
    by_method = dict(zip(shown.get("method", pd.Series(dtype=str)), shown_ids))
    ours = []
    for _, r in mine.iterrows():
        if "paper_row" in r and _is_set(r["paper_row"]):
            counterpart = _check_id(str(r["paper_row"]), papers, csv)
        else:
            counterpart = by_method.get(r.get("method"))
        ours.append(_our_row(r, info, counterpart))
    referenced = list(dict.fromkeys(shown_ids + [o.counterpart for o in ours if o.counterpart]))
    tables = list(dict.fromkeys((papers.loc[i, "paper"], papers.loc[i, "table"])
                                for i in referenced))
    blocks = []
    for paper, name in tables:
        ids = [i for i in papers.index if i in referenced and papers.loc[i, "paper"] == paper
               and papers.loc[i, "table"] == name]
        rows = [o for o in ours if o.counterpart in ids or (o.counterpart is None
                                                            and len(tables) == 1)]
        for o in rows:
            if o.counterpart:
                _check_not_a_copy(o, papers.loc[o.counterpart], csv)
        if rows:
            blocks.append(Block(info["chapter"], csv.name, paper, name, papers.loc[ids], rows))
    return blocks


def collect_blocks(root: Path | None = None, profiles: tuple[str, ...] | None = None,
                   dataset: str | None = None) -> list[Block]:
    """Every comparison block under the results root (``profiles``/``dataset`` filter), in the
    order of chapter, table file and paper table."""
    from xmrlib.papers import paper_rows

    root = root or results_root()
    papers = paper_rows().set_index("row_id", drop=False)
    blocks = []
    for run_json in sorted(root.glob("*/*/*/run.json")):
        info = read_run_json(run_json)
        if profiles and info["profile"] not in profiles:
            continue
        if dataset and info["dataset"] != dataset:
            continue
        for csv in sorted(run_json.parent.glob("*.csv")):
            blocks.extend(_table_blocks(csv, info, papers))
    return blocks


# --------------------------------------------------------------------------- verdicts

def comparable(ours: OurRow, paper: pd.Series) -> bool:
    """Same dataset, image features and protocol as the paper row: a difference means something."""
    return (PAPER_DATASET.get(ours.dataset) == paper["dataset"]
            and ours.features == paper["features"] and ours.protocol == paper["protocol"])


def _order_metric(pairs: list[tuple[OurRow, pd.Series]]) -> tuple[list[str], str]:
    """The recalls every pair has on both sides, and how to call their sum."""
    cols = [m for m in RECALLS if all(m in o.values and not math.isnan(p[m]) for o, p in pairs)]
    if len(cols) == len(RECALLS):
        return cols, "rsum"
    ks = {c.split("_r")[1] for c in cols}
    if all(f"{d}_r{k}" in cols for d in ("i2t", "t2i") for k in ks):
        summed = " + ".join(f"R@{k}" for k in sorted(ks, key=int)) + " both ways"
    else:
        summed = " + ".join(f"{c[:3]} R@{c.split('_r')[1]}" for c in cols)
    return cols, f"{summed} (the recalls given for every paired row)"


def ordering_verdict(block: Block) -> str:
    """Does our ordering of the paired rows follow the paper's ordering of their counterparts?"""
    from xmrlib.claims import compare_summaries

    pairs = [(o, block.paper_rows.loc[o.counterpart]) for o in block.ours if o.counterpart]
    if len({p.name for _, p in pairs}) < 2:
        return ("one row of ours has a paper counterpart: no ordering to compare" if pairs
                else "no row of ours has a paper counterpart: no ordering to compare")
    cols, metric = _order_metric(pairs)
    if not cols:
        return "no recall is given on both sides: no ordering to compare"
    agree = total = separable = 0
    for (oa, pa), (ob, pb) in combinations(pairs, 2):
        paper_diff = sum(pa[c] for c in cols) - sum(pb[c] for c in cols)
        if pa.name == pb.name or paper_diff == 0:
            continue
        ours_diff = sum(oa.values[c] for c in cols) - sum(ob.values[c] for c in cols)
        total += 1
        agree += (ours_diff > 0) == (paper_diff > 0) and ours_diff != 0
        if cols == list(RECALLS) and "rsum" in oa.sd and "rsum" in ob.sd:
            separable += bool(compare_summaries(oa.values["rsum"], oa.sd["rsum"], oa.n_seeds,
                                                ob.values["rsum"], ob.sd["rsum"], ob.n_seeds))
    if not total:
        return "the paper ties every paired row: no ordering to compare"
    word = ("reproduced" if agree == total else "reversed" if agree == 0 else "partly reproduced")
    seeds = {o.n_seeds for o, _ in pairs}
    spread = (f"{max(seeds)} seeds, {separable} of {total} differences separable at 95 %"
              if min(seeds) > 1 else "one seed")
    return f"ordering {word}: {agree} of {total} pairs agree by {metric}; {spread}"


def values_verdict(block: Block) -> str:
    """Whether our numbers can be compared with the paper's, and the rsum difference if so."""
    pairs = [(o, block.paper_rows.loc[o.counterpart]) for o in block.ours if o.counterpart]
    same = [(o, p) for o, p in pairs if comparable(o, p)]
    if not same:
        ours = block.ours[0]
        theirs = sorted(set(block.paper_rows["dataset"]))
        return (f"numbers not comparable ({DATASET_NAMES.get(ours.dataset, ours.dataset)} vs "
                f"{' and '.join(theirs)})" if PAPER_DATASET.get(ours.dataset) not in theirs
                else "numbers not comparable (features or protocol differ)")
    deltas = [o.values["rsum"] - p["rsum"] for o, p in same
              if "rsum" in o.values and not math.isnan(p["rsum"])]
    mean = f"; mean rsum difference {sum(deltas) / len(deltas):+.1f}" if deltas else ""
    return f"numbers comparable for {len(same)} of {len(pairs)} paired rows{mean}"


# --------------------------------------------------------------------------- tables

def long_table(blocks: list[Block]) -> pd.DataFrame:
    """One line per (our row, metric) with its paper counterpart's value (``report.csv``)."""
    rows = []
    for b in blocks:
        for o in b.ours:
            p = b.paper_rows.loc[o.counterpart] if o.counterpart else None
            for m in METRICS:
                if m not in o.values:
                    continue
                paper_value = float(p[m]) if p is not None else math.nan
                same = p is not None and comparable(o, p) and not math.isnan(paper_value)
                rows.append({
                    "chapter": b.chapter, "table": Path(b.csv).stem,
                    "paper": b.paper_rows["paper_name"].iloc[0], "paper_table": b.table,
                    "paper_row": o.counterpart or "",
                    "paper_method": p["method"] if p is not None else "",
                    "paper_setting": (f"{p['dataset']} {p['protocol']}, {p['features']}"
                                      if p is not None else ""),
                    "paper_source": p["source"] if p is not None else "",
                    "run": o.name, "run_setting": o.setting, "metric": m,
                    "paper_value": paper_value, "our_value": o.values[m],
                    "our_sd": o.sd.get(m, math.nan), "n_seeds": o.n_seeds,
                    "delta": round(o.values[m] - paper_value, 2) if same else math.nan})
    return pd.DataFrame(rows, columns=["chapter", "table", "paper", "paper_table", "paper_row",
                                       "paper_method", "paper_setting", "paper_source", "run",
                                       "run_setting", "metric", "paper_value", "our_value",
                                       "our_sd", "n_seeds", "delta"])


def summary_table(blocks: list[Block]) -> pd.DataFrame:
    """Per paper table: what we ran, on what, and the verdict (the page's first table)."""
    rows = []
    for b in blocks:
        names = [o.name for o in b.ours]
        ran = "; ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        o = b.ours[0]
        settings = sorted({f"{p['dataset']} {p['protocol']}" for _, p in b.paper_rows.iterrows()})
        rows.append({"paper": b.paper_rows["paper_name"].iloc[0],
                     "paper table": f"{b.table} ({'; '.join(settings)})",
                     "what we ran": f"chapter {b.chapter}: {ran}",
                     "on what": o.setting,
                     "verdict": f"{ordering_verdict(b)}; {values_verdict(b)}"})
    return pd.DataFrame(rows, columns=["paper", "paper table", "what we ran", "on what",
                                       "verdict"])


def _fmt(value: float, sd: float = math.nan) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" + ("" if math.isnan(sd) else f" ± {sd:.1f}")


def block_table(block: Block) -> pd.DataFrame:
    """The compact table of one block: the paper's rows, then ours, labelled, with R@1/5/10 both
    ways, rsum and the paper row each of ours is paired with; a difference column only where
    dataset, features and protocol match."""
    from xmrlib.papers import PAPERS

    rows = []
    for _, p in block.paper_rows.iterrows():
        marks = ([] if p["reproducible"] else ["paper only"]) + [
            f"cited from {name}" for name, _, _ in PAPERS.values()
            if f"citing {name};" in p["source"]]
        row = p["method"] + (f" ({'; '.join(marks)})" if marks else "")
        rows.append({"side": "paper", "row": row,
                     "setting": f"{p['dataset']} {p['protocol']}, {p['features']}",
                     **{m: _fmt(p[m]) for m in (*RECALLS, "rsum")}, "paired with": ""})
    deltas = {}
    for o in block.ours:
        p = block.paper_rows.loc[o.counterpart] if o.counterpart else None
        rows.append({"side": "ours", "row": o.name, "setting": o.short_setting,
                     **{m: _fmt(o.values.get(m, math.nan), o.sd.get(m, math.nan))
                        for m in (*RECALLS, "rsum")},
                     "paired with": p["method"] if p is not None else "-"})
        if p is not None and comparable(o, p) and "rsum" in o.values:
            deltas[len(rows) - 1] = o.values["rsum"] - p["rsum"]
    df = pd.DataFrame(rows)
    if deltas:
        df["rsum difference"] = [_fmt(deltas[i]) if i in deltas else "" for i in range(len(df))]
    return df.rename(columns={"i2t_r1": "i2t R@1", "i2t_r5": "i2t R@5", "i2t_r10": "i2t R@10",
                              "t2i_r1": "t2i R@1", "t2i_r5": "t2i R@5", "t2i_r10": "t2i R@10"})


def _markdown(df: pd.DataFrame) -> str:
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def report_markdown(blocks: list[Block]) -> str:
    """The reproduction-status page body: the summary, then one compact table per block."""
    if not blocks:
        return ("No reproduced table names a paper row yet: run "
                "`python -m xmrlib.reproduce run` first.\n")
    from xmrlib.papers import READ_FROM

    parts = ["## Summary\n\n", _markdown(summary_table(blocks))]
    for b in blocks:
        parts += [f"\n## {b.title} (chapter {b.chapter})\n\n",
                  f"**Paper:** {b.title}, read from {READ_FROM[b.paper]}. "
                  f"**Ours:** chapter {b.chapter}, `{b.csv}`, {b.ours[0].setting}. "
                  f"**Verdict:** {ordering_verdict(b)}; {values_verdict(b)}.\n\n",
                  _markdown(block_table(b))]
    return "".join(parts)


def build_report(root: Path | None = None, profiles: tuple[str, ...] | None = None,
                 dataset: str | None = None) -> pd.DataFrame:
    """The long paper-vs-run table (see :func:`long_table`) of the results under ``root``."""
    return long_table(collect_blocks(root, profiles, dataset))


def write_report(root: Path | None = None, profiles: tuple[str, ...] = REPORTED_PROFILES,
                 dataset: str | None = None, out: Path | None = None
                 ) -> tuple[Path, Path, pd.DataFrame]:
    """Write ``report.md`` (the page) and ``report.csv`` (long format) into ``out`` (default: the
    results root) from the results of ``profiles``; return their paths and the long table."""
    root = root or results_root()
    out = out or root
    blocks = collect_blocks(root, profiles, dataset)
    df = long_table(blocks)
    md, csv = out / "report.md", out / "report.csv"
    atomic_write_text(md, report_markdown(blocks))
    atomic_write_text(csv, df.to_csv(index=False))
    return md, csv, df

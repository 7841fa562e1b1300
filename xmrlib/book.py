"""Book assembly: ``build/book/`` for ``jupyter-book build`` from the executed chapters.

``python -m xmrlib.reproduce book --profile P --dataset D`` fills it with the executed chapters,
a table of contents of what exists, the reproduction report, the chapter overview and the
exercise times of the teaching page and a gallery of Shapes scenes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from xmrlib.chapters import CHAPTER_RE, check_profile_dataset, discover_chapters, executed_dir
from xmrlib.report import write_report
from xmrlib.results import ReproduceError, read_run_json, results_dir
from xmrlib.utils import atomic_write_text, repo_root


def _toc_entries(node: Any) -> Any:
    """Copy of a _toc.yml node where each ``glob`` entry becomes the ``file`` it matches; an
    entry that matches nothing is dropped, and so is a part left without chapters."""
    root = repo_root()
    if isinstance(node, list):
        kept = [e for e in (_toc_entries(v) for v in node) if e is not None]
        return kept or None
    if not isinstance(node, dict):
        return node
    if "glob" in node:
        hits = sorted(p for p in root.glob(node["glob"]) if p.suffix in (".ipynb", ".md"))
        if len(hits) == 1:
            return {"file": hits[0].relative_to(root).with_suffix("").as_posix()}
        return node if hits else None
    out = {}
    for key, value in node.items():
        value = _toc_entries(value)
        if key in ("chapters", "sections", "parts") and value is None:
            if "file" not in node:
                return None
            continue
        out[key] = value
    return out


def assemble_book(profile: str, dataset: str) -> Path:
    """Fill ``build/book/`` for ``jupyter-book build . --toc build/book/_toc.yml``: the executed
    chapters of ``profile``/``dataset``, a table of contents listing only what exists, the
    reproduction report, a gallery of Shapes scenes and their statistics. Returns the effective toc path."""
    import yaml

    check_profile_dataset(profile, dataset)
    book = repo_root() / "build" / "book"
    nb_out = book / "notebooks"
    if nb_out.exists():
        shutil.rmtree(nb_out)
    nb_out.mkdir(parents=True)
    src = executed_dir(profile, dataset)
    for path in sorted(src.glob("*.ipynb")):
        if CHAPTER_RE.match(path.name):
            shutil.copy2(path, nb_out / path.name)
    write_report()  # results/report.* of the committed profiles
    write_report(profiles=(profile,), dataset=dataset, out=book)  # the page: what this build ran
    atomic_write_text(book / "datasets_gallery.md", shapes_gallery(book / "gallery", profile))
    atomic_write_text(book / "datasets_statistics.md", shapes_statistics(profile))
    overview = chapter_overview(profile, dataset)
    atomic_write_text(book / "chapter_overview.md", overview_markdown(overview, profile, dataset))
    executed = {c: nb_out / p.name if (nb_out / p.name).is_file() else p  # unrun: no durations
                for c, p in discover_chapters().items()}
    devices = ", ".join(sorted(set(overview["device"]) - {""})) or "device not recorded"
    atomic_write_text(book / "exercise_times.md", exercise_times_markdown(
        exercise_times(executed), profile, dataset, devices))
    toc = yaml.safe_load((repo_root() / "_toc.yml").read_text(encoding="utf-8"))
    out = book / "_toc.yml"
    atomic_write_text(out, yaml.safe_dump(_toc_entries(toc), sort_keys=False))
    return out


def chapter_overview(profile: str, dataset: str) -> pd.DataFrame:
    """One row per chapter notebook: its title, the wall time of its last complete run of
    ``profile``/``dataset`` (from ``run.json``; NaN when it has not run), the device, and its
    exercises and auto-checkers (counted in the notebook)."""
    rows = []
    for chapter, path in discover_chapters().items():
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []))
        title = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
        info = {}
        run_json = results_dir(profile, dataset, chapter) / "run.json"
        if run_json.is_file():
            info = read_run_json(run_json)
        done = info.get("status") == "complete"
        rows.append({"chapter": chapter, "title": title.group(1) if title else path.stem,
                     "minutes": round(info["wall_s"] / 60, 1) if done else float("nan"),
                     "device": info.get("device", "") if done else "",
                     "exercises": len(re.findall(r"\{exercise\}", text)),
                     "checkers": ", ".join(sorted(set(re.findall(r"\bcheck_\w+", text))))})
    return pd.DataFrame(rows)


def overview_markdown(df: pd.DataFrame, profile: str, dataset: str) -> str:
    """The chapter overview as a Markdown table (the teaching page includes it)."""
    lines = [f"| chapter | wall time, `{profile}` profile on {dataset} (min) | device | "
             "exercises | auto-checkers in `xmrlib.exercises` |", "|---|---|---|---|---|"]
    for r in df.itertuples():
        minutes = "not run" if pd.isna(r.minutes) else f"{r.minutes:.1f}"
        checkers = ", ".join(f"`{c}`" for c in r.checkers.split(", ") if c) or "-"
        lines.append(f"| {r.title} | {minutes} | {r.device or '-'} | {r.exercises} | {checkers} |")
    return "\n".join(lines) + "\n"


#: an exercise directive: its optional title and its ``:label:`` option
_EXERCISE_RE = re.compile(r"^\s*[`:]{3,}\{exercise\}[ \t]*(?P<title>[^\n]*)\n"
                          r"(?:.*\n)*?\s*:label:\s*(?P<label>\S+)", re.MULTILINE)


def exercise_times(notebooks: dict[str, Path]) -> pd.DataFrame:
    """One row per exercise of the book, numbered through the book in chapter order as
    sphinx-exercise numbers them: its chapter, label, title and the seconds its code cells took
    (the stub, the solution and the checker: every code cell from the exercise up to the next
    exercise or section heading, hidden ``remove-cell`` cells left out), read from papermill's
    per-cell ``duration`` in the executed notebooks ``notebooks[chapter]``. ``seconds`` is NaN
    for a chapter whose executed copy is missing or lacks durations."""
    rows, number = [], 0
    for chapter, path in notebooks.items():
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        current = None
        for cell in cells:
            text = "".join(cell.get("source", ""))
            meta = cell.get("metadata", {})
            if cell.get("cell_type") == "markdown":
                m = _EXERCISE_RE.search(text)
                if m:
                    number += 1
                    current = {"number": number, "chapter": chapter, "label": m["label"],
                               "title": m["title"].strip(), "seconds": 0.0}
                    rows.append(current)
                elif re.match(r"^#{1,2} ", text.lstrip()):
                    current = None
            elif current is not None and "remove-cell" not in meta.get("tags", []):
                duration = meta.get("papermill", {}).get("duration")
                current["seconds"] += float("nan") if duration is None else float(duration)
    return pd.DataFrame(rows, columns=["number", "chapter", "label", "title", "seconds"])


def exercise_times_markdown(df: pd.DataFrame, profile: str, dataset: str, device: str) -> str:
    """The exercise times as a Markdown table (the teaching page includes it)."""
    lines = [f"| exercise | chapter | label | time of its cells, `{profile}` profile on {dataset}, "
             f"{device} (s) |", "|---|---|---|---|"]
    for r in df.itertuples():
        seconds = "not run" if pd.isna(r.seconds) else f"{r.seconds:.1f}"
        title = f" {r.title}" if r.title else ""
        lines.append(f"| {r.number}.{title} | {int(r.chapter)} | `{r.label}` | {seconds} |")
    return "\n".join(lines) + "\n"


def shapes_statistics(profile: str) -> str:
    """The datasets page's statistics table, measured on the Shapes data of ``profile``."""
    from xmrlib.data import get_dataset
    from xmrlib.data.shapes import folder_statistics, statistics_markdown

    return statistics_markdown(folder_statistics(get_dataset("shapes", profile=profile)))


def shapes_gallery(out_dir: Path, profile: str, n: int = 6) -> str:
    """Copy ``n`` rendered Shapes test scenes (binding twins side by side when the data has
    groups) into ``out_dir``; return a Markdown table of them with their five captions (the
    datasets page includes it)."""
    import numpy as np

    from xmrlib.data import get_dataset, load_precomp

    data = load_precomp(get_dataset("shapes", profile=profile), "test")
    if data.image_paths is None:
        raise ReproduceError(f"{data.root}: the Shapes test split has no rendered images")
    order = (np.argsort(data.groups, kind="stable") if data.groups is not None
             else np.arange(len(data.images)))
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["| scene | group | its five captions |", "|---|---|---|"]
    for i in order[:n]:
        shutil.copy2(data.image_paths[i], out_dir / f"scene_{i}.png")
        cpi = data.captions_per_image
        caps = "<br>".join(data.captions[cpi * i: cpi * (i + 1)])
        group = "-" if data.groups is None else str(int(data.groups[i]))
        lines.append(f"| ![scene {i}](gallery/scene_{i}.png) | {group} | {caps} |")
    return "\n".join(lines) + "\n"

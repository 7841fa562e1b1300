"""Check the built book offline: no CDN scripts/stylesheets, typeset math and rendered widgets.

Usage: ``python scripts/check_html.py [--html _build/html] [--shots build/screenshots]``.

1. Every HTML page is scanned: a ``<script src>`` or ``<link href>`` (stylesheet, preload, icon)
   that points off the machine (``http://``, ``https://`` or ``//``) is an error.
2. Headless Chromium loads each page from disk (``--dump-dom`` with a virtual time budget): pages
   with math must show MathJax output (``mjx-container``), pages with saved widget state must show
   rendered widgets (elements of class ``widget-*`` created by the widget manager).
3. Pages with an explorer (``xmrlib.widgets``) are loaded once more with a probe script added
   that sets each explorer's Dropdown to its last option, as a reader would, and records the text
   of the linked view before and after: every view must change, without a kernel.
4. Screenshots of the intro and of chapter 01 go to ``--shots``.

Chromium is installed (``apt-get install -y chromium``) only when ``CI=true``; elsewhere a missing
browser skips steps 2-4 with a message. Exit code 1 on any failure.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from xmrlib.widgets import SWITCH_CLASS, VIEWS_CLASS

REMOTE = re.compile(r"""<(script|link)\b[^>]*\b(src|href)\s*=\s*["'](https?:)?//[^"']*["'][^>]*>""",
                    re.IGNORECASE)
MATH_SOURCE = re.compile(r'class="[^"]*\bmath\b')
WIDGET_SOURCE = "application/vnd.jupyter.widget-view+json"
SWITCH_SOURCE = f"\"{SWITCH_CLASS}\""    # in the saved widget state of a page with an explorer
RENDERED_WIDGET = re.compile(r'<div[^>]*class="[^"]*\bwidget-(?!view)[a-z-]+')
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Sets every explorer switch (a Dropdown jslinked to a Stack of views, see xmrlib.widgets) to its
# last option once the widget manager has rendered it; writes [{label, before, after}] as JSON.
PROBE = """<script>
(function (tries) {
  function run() {
    var pairs = [];
    document.querySelectorAll(".%(switch)s").forEach(function (sw) {
      var views = sw.nextElementSibling, select = sw.querySelector("select");
      if (select && views && views.classList.contains("%(views)s")) pairs.push([select, views]);
    });
    if (!pairs.length && tries-- > 0) return setTimeout(run, 250);
    var out = pairs.map(function (p) {
      var before = p[1].innerText, last = p[0].options.length - 1;
      p[0].selectedIndex = last;
      p[0].dispatchEvent(new Event("change", {bubbles: true}));
      return {label: p[0].options[last].text, before: before, views: p[1]};
    });
    setTimeout(function () {
      var pre = document.createElement("pre");
      pre.id = "xmr-probe";
      pre.textContent = JSON.stringify(out.map(function (o) {
        return {label: o.label, before: o.before, after: o.views.innerText};
      }));
      document.body.appendChild(pre);
    }, 1000);
  }
  window.addEventListener("load", run);
})(40);
</script>"""


def remote_assets(html_dir: Path) -> list[str]:
    """``page: tag`` for every script/stylesheet/icon tag that loads from another host."""
    found = []
    for page in sorted(html_dir.rglob("*.html")):
        for m in REMOTE.finditer(page.read_text(encoding="utf-8", errors="replace")):
            tag = m.group(0)
            if m.group(1).lower() == "link" and not re.search(
                    r'rel\s*=\s*["\'][^"\']*(stylesheet|preload|icon|modulepreload)', tag, re.I):
                continue
            found.append(f"{page.relative_to(html_dir)}: {tag[:160]}")
    return found


def find_browser() -> str | None:
    """Path of a Chromium binary; installs the Debian package first when ``CI=true``."""
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI") == "true":
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True,
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        return shutil.which("chromium")
    return None


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def dump_dom(browser: str, page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran (virtual time budget of 10 s)."""
    return _chromium(browser, profile, "--dump-dom", page.resolve().as_uri()).stdout


def screenshot(browser: str, page: Path, out: Path, profile: Path) -> None:
    """A 1280x1800 PNG of ``page``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium(browser, profile, "--hide-scrollbars", "--window-size=1280,1800",
              f"--screenshot={out}", page.resolve().as_uri())
    if not out.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {page}")


def switch_views(browser: str, page: Path, profile: Path) -> list[dict[str, str]]:
    """Set each explorer switch in ``page`` to its last option in headless Chromium; for each,
    the chosen label and the text of its view before and after (empty when none rendered)."""
    probe = PROBE % {"switch": SWITCH_CLASS, "views": VIEWS_CLASS}
    copy = page.with_name(f".probe-{page.name}")     # same folder: relative assets still load
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", probe + "</body>", 1),
                    encoding="utf-8")
    try:
        dom = dump_dom(browser, copy, profile)
    finally:
        copy.unlink()
    found = re.search(r'<pre id="xmr-probe">(.*?)</pre>', dom, re.DOTALL)
    switches = json.loads(html.unescape(found.group(1))) if found else []
    return [{key: text.replace("\xa0", " ") for key, text in s.items()} for s in switches]


def switch_errors(name: Path, switches: list[dict[str, str]]) -> list[str]:
    """Errors for switches whose view did not change to the chosen one (the label's first
    number, a query index or K, must appear in the new view)."""
    if not switches:
        return [f"{name}: no explorer switch rendered"]
    errors = []
    for s in switches:
        number = re.search(r"\d+", s["label"])
        if s["after"] == s["before"] or not number or number.group(0) not in s["after"]:
            errors.append(f"{name}: choosing {s['label']!r} did not show its view "
                          f"(before {s['before'][:80]!r}, after {s['after'][:80]!r})")
    return errors


def content_pages(html_dir: Path) -> list[Path]:
    """The book's pages (not Sphinx's search/genindex/redirect pages)."""
    skip = {"search.html", "genindex.html", "index.html"}
    return [p for p in sorted(html_dir.rglob("*.html"))
            if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts]


def check_rendering(html_dir: Path, shots: Path, browser: str) -> list[str]:
    """Errors for pages whose math or widgets did not render; writes the screenshots."""
    errors = []
    with tempfile.TemporaryDirectory() as profile:
        for page in content_pages(html_dir):
            source = page.read_text(encoding="utf-8", errors="replace")
            has_math, has_widget = bool(MATH_SOURCE.search(source)), WIDGET_SOURCE in source
            if not (has_math or has_widget):
                continue
            dom = dump_dom(browser, page, Path(profile))
            name = page.relative_to(html_dir)
            if has_math and "<mjx-container" not in dom:
                errors.append(f"{name}: math is not typeset (no mjx-container in the DOM)")
            if has_widget and not RENDERED_WIDGET.search(dom):
                errors.append(f"{name}: saved widgets are not rendered")
            print(f"{name}: math={'ok' if has_math and '<mjx-container' in dom else '-'} "
                  f"widgets={'ok' if has_widget and RENDERED_WIDGET.search(dom) else '-'}")
            if has_widget and SWITCH_SOURCE in source:
                switches = switch_views(browser, page, Path(profile))
                errors += switch_errors(name, switches)
                for s in switches:
                    print(f"  switched to {s['label'][:70]!r}: view {s['before'][:50]!r} -> "
                          f"{s['after'][:50]!r}".replace("\n", " "))
        targets = [html_dir / "book" / "intro.html"]
        targets += sorted((html_dir / "build" / "book" / "notebooks").glob("01_*.html"))
        for page in targets:
            if page.exists():
                out = shots / f"{page.stem}.png"
                screenshot(browser, page, out, Path(profile))
                print(f"screenshot: {out}")
    return errors


def main(argv: list[str] | None = None) -> int:
    """Run the checks; print what failed; return the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--html", default="_build/html", type=Path)
    p.add_argument("--shots", default="build/screenshots", type=Path)
    args = p.parse_args(argv)
    if not (args.html / "book" / "intro.html").exists():
        print(f"error: no built book at {args.html} (run `make book` first)", file=sys.stderr)
        return 1
    errors = [f"remote asset: {r}" for r in remote_assets(args.html)]
    browser = find_browser()
    if browser is None:
        print("skipped the browser check: no chromium here (CI=true installs it)")
    else:
        errors += check_rendering(args.html, args.shots, browser)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print("check_html: " + ("FAILED" if errors else "ok"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

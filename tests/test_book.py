"""The strict book build on the smoke profile, the CDN scan and the headless-browser check."""

import os
import shutil
import subprocess
import sys

import pytest
from smoke_runs import TEST_RESULTS, smoke_run

from xmrlib.utils import repo_root

ROOT = repo_root()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HTML = ROOT / "build" / "test-book" / "_build" / "html"
sys.path.insert(0, str(ROOT / "scripts"))
import check_html  # noqa: E402


@pytest.fixture(scope="module")
def built_book():
    """Smoke-run the chapters not yet executed, assemble build/book/ and build it strictly."""
    failed = [o.error for o in (smoke_run(nb.name[:2])[0] for nb in NOTEBOOKS)
              if o.status != "complete"]
    assert not failed, failed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XMR_RESULTS_DIR": str(TEST_RESULTS)}
    subprocess.run(["bash", "scripts/vendor_js.sh"], cwd=ROOT, check=True, capture_output=True)
    book = subprocess.run([sys.executable, "-m", "xmrlib.reproduce", "book", "--profile", "smoke",
                           "--dataset", "shapes"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert book.returncode == 0, book.stdout + book.stderr
    shutil.rmtree(HTML.parent, ignore_errors=True)
    jb = shutil.which("jupyter-book", path=os.path.dirname(sys.executable)) or "jupyter-book"
    build = subprocess.run([jb, "build", ".", "--toc", "build/book/_toc.yml", "-W", "-n",
                            "--keep-going", "--path-output", str(HTML.parent.parent)],
                           env=env, cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, (build.stdout + build.stderr)[-6000:]
    return HTML


@pytest.mark.slow
def test_strict_build_has_every_chapter(built_book):
    assert (built_book / "book" / "intro.html").exists()
    for nb in NOTEBOOKS:
        assert (built_book / "build" / "book" / "notebooks" / f"{nb.stem}.html").exists(), nb.name


@pytest.mark.slow
def test_no_cdn_assets(built_book):
    assert check_html.remote_assets(built_book) == []
    page = (built_book / "book" / "notation.html").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml.js" in page


def test_remote_asset_scan_catches_cdns(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.jsdelivr.net/npm/x.js"></script>'
        '<link rel="stylesheet" href="//cdnjs.cloudflare.com/a.css">'
        '<link rel="canonical" href="https://example.org/">'
        '<script src="_static/local.js"></script>')
    found = check_html.remote_assets(tmp_path)
    assert len(found) == 2 and "cdn.jsdelivr" in found[0] and "cdnjs" in found[1]


@pytest.mark.slow
def test_browser_renders_math_and_widgets(built_book):
    if os.environ.get("CI") != "true" and check_html.find_browser() is None:
        pytest.skip("no chromium here and CI is not 'true': browser check skipped")
    shots = ROOT / "build" / "test-book" / "screenshots"
    assert check_html.check_rendering(built_book, shots, check_html.find_browser()) == []
    assert (shots / "intro.png").exists()


def test_switch_errors_name_unchanged_views():
    page = check_html.Path("03.html")
    assert check_html.switch_errors(page, []) == ["03.html: no explorer switch rendered"]
    same = {"label": "image 7 (rank 3)", "before": "caption 1: a", "after": "caption 1: a"}
    wrong = {"label": "image 7 (rank 3)", "before": "caption 1: a", "after": "caption 2: b"}
    right = {"label": "image 7 (rank 3)", "before": "caption 1: a", "after": "image 7 ..."}
    assert len(check_html.switch_errors(page, [same, wrong, right])) == 2


@pytest.mark.slow
def test_browser_switches_explorer_views(built_book, tmp_path):
    """Setting an explorer's Dropdown in the static page shows another precomputed view; with
    the jslink models removed from the saved state, the same probe sees no change."""
    if os.environ.get("CI") != "true" and check_html.find_browser() is None:
        pytest.skip("no chromium here and CI is not 'true': browser check skipped")
    browser = check_html.find_browser()
    page = built_book / "build" / "book" / "notebooks" / "03_vsepp.html"
    switches = check_html.switch_views(browser, page, tmp_path / "profile")
    assert switches and check_html.switch_errors(page, switches) == []
    assert all(s["after"] != s["before"] for s in switches)
    unlinked = page.with_name("unlinked-03.html")
    unlinked.write_text(page.read_text(encoding="utf-8").replace('"LinkModel"', '"NoSuchModel"'),
                        encoding="utf-8")
    try:
        broken = check_html.switch_views(browser, unlinked, tmp_path / "profile")
    finally:
        unlinked.unlink()
    assert check_html.switch_errors(unlinked, broken) != []

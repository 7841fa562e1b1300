"""Smoke-profile chapter runs shared by test_notebooks.py and test_book.py: each chapter is
executed once per pytest session (forced, so a library change is always exercised)."""

import os
import time
from contextlib import contextmanager

from xmrlib import reproduce as rp
from xmrlib.utils import repo_root

TEST_RESULTS = repo_root() / "build" / "test-results"
_DONE: dict[str, tuple[rp.ChapterOutcome, float]] = {}


@contextmanager
def using_test_results():
    """Point ``XMR_RESULTS_DIR`` at build/test-results (the committed results stay untouched)."""
    previous = os.environ.get("XMR_RESULTS_DIR")
    os.environ["XMR_RESULTS_DIR"] = str(TEST_RESULTS)
    try:
        yield TEST_RESULTS
    finally:
        if previous is None:
            os.environ.pop("XMR_RESULTS_DIR", None)
        else:
            os.environ["XMR_RESULTS_DIR"] = previous


def smoke_run(chapter: str) -> tuple[rp.ChapterOutcome, float]:
    """Outcome and wall time of the smoke run of ``chapter`` (run on first request)."""
    if chapter not in _DONE:
        with using_test_results():
            t0 = time.perf_counter()
            [outcome] = rp.run_chapters("smoke", "shapes", device="cpu", chapters=[chapter],
                                        force=True, log=lambda m: None)
            _DONE[chapter] = (outcome, time.perf_counter() - t0)
    return _DONE[chapter]

"""Time ``xmrlib.evaluation.recall_metrics`` against the plain per-query loop (vsepp's algorithm).

The loop sorts the scores of every query (``argsort`` descending, then the position of the
positive), as the official VSE++ ``i2t``/``t2i`` do. It is timed on a slice of the queries
(``--loop-queries`` images and ``cpi`` times as many captions, each against the *whole*
gallery) and extrapolated linearly to all queries, which is exact up to cache effects since
every query costs the same sort. The vectorised version is timed on the whole matrix.

    OMP_NUM_THREADS=1 python benchmarks/bench_recall.py --n-images 5000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xmrlib.evaluation import recall_metrics


def loop_ranks(sims: np.ndarray, cpi: int, n_queries: int) -> tuple[list[int], list[int]]:
    """vsepp-style ranks for the first ``n_queries`` images and ``cpi * n_queries`` captions."""
    r_i2t = []
    for i in range(n_queries):
        order = np.argsort(sims[i])[::-1]
        r_i2t.append(min(int(np.where(order == j)[0][0]) for j in range(cpi * i, cpi * i + cpi)))
    r_t2i = []
    for j in range(cpi * n_queries):
        order = np.argsort(sims[:, j])[::-1]
        r_t2i.append(int(np.where(order == j // cpi)[0][0]))
    return r_i2t, r_t2i


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=5000)
    p.add_argument("--cpi", type=int, default=5)
    p.add_argument("--loop-queries", type=int, default=200, help="images timed in the loop")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    n, cpi, q = args.n_images, args.cpi, min(args.loop_queries, args.n_images)
    sims = np.random.default_rng(0).standard_normal((n, cpi * n), dtype=np.float32)

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        metrics = recall_metrics(sims, cpi)
        times.append(time.perf_counter() - t0)
    fast = min(times)

    t0 = time.perf_counter()
    loop_ranks(sims, cpi, q)
    loop_slice = time.perf_counter() - t0
    loop_full = loop_slice * n / q

    print(f"sims: {n} x {cpi * n} float32 (random Gaussian); i2t_r10 = {metrics['i2t_r10']:.2f}")
    print(f"| method | queries timed | seconds | seconds for all {n} + {cpi * n} queries |")
    print("| --- | --- | --- | --- |")
    print(f"| recall_metrics (vectorised, best of {args.repeats}) | all | {fast:.2f} | "
          f"{fast:.2f} |")
    print(f"| plain loop, argsort per query | {q} + {cpi * q} | {loop_slice:.2f} | "
          f"{loop_full:.1f} (extrapolated x{n / q:g}) |")
    print(f"speed-up: {loop_full / fast:.0f}x")


if __name__ == "__main__":
    main()

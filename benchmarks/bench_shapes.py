"""Time the Shapes generator (features="sim") at a given size; prints seconds.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_shapes.py --n-train 5000 --n-dev 1000 --n-test 1000``
"""

import argparse
import tempfile
import time

from xmrlib.data import make_shapes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-dev", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_shapes(tmp, a.n_train, a.n_dev, a.n_test, seed=a.seed, features="sim")
        print(f"shapes sim {a.n_train}/{a.n_dev}/{a.n_test}: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()

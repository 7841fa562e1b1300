"""Speed of SCAN re-scoring a first stage's shortlists, as chapter 07 does on the whole default
test split (1000 images, 5000 captions): every shortlisted pair scored in one batched call of
``SCAN.pair_scores`` (``--mode batched``, the library's ``two_stage_metrics_batched``), one
call of SCAN's grid similarity per query (``--mode per-query``, ``two_stage_metrics``, the
previous code of the chapter), or every pair (``--mode exhaustive``). An untrained SCAN t-i LSE
of chapter 04's default size and an untrained VSE++ first stage: the cost does not depend on
the weights.

    OMP_NUM_THREADS=1 python benchmarks/bench_two_stage.py [--mode batched|per-query|exhaustive]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xmrlib.data import get_dataset, load_precomp
from xmrlib.evaluation.scoring import encode_dataset, similarity_matrix
from xmrlib.models import build_model
from xmrlib.rerank import two_stage_metrics, two_stage_metrics_batched
from xmrlib.vocab import Vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("batched", "per-query", "exhaustive"),
                        default="batched")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    test = load_precomp(get_dataset("shapes", profile="default"), "test")
    vocab = Vocabulary.build(test.captions).to_dict()
    torch.manual_seed(0)
    dims = dict(vocab=vocab, img_dim=test.images.shape[-1], embed_size=64, word_dim=64)
    scan = build_model("scan", **dims, lambda_softmax=9.0, lambda_lse=6.0).eval()
    first = build_model("vsepp", **dims).eval()
    f_img, f_cap = (x.numpy() for x in encode_dataset(first, test, device="cpu",
                                                      progress=False)[:2])
    img, cap, lens = encode_dataset(scan, test, device="cpu", progress=False)
    regions = torch.as_tensor(np.asarray(test.n_regions))

    def grid(i: np.ndarray, c: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return scan.similarity(img[i], cap[c], lens[c], regions[i]).numpy()

    def pairs(i: np.ndarray, c: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return scan.pair_scores(img, cap, torch.as_tensor(i), torch.as_tensor(c), lens,
                                    regions).numpy()

    t0 = time.perf_counter()
    if args.mode == "exhaustive":
        similarity_matrix(scan, img, cap, lens, regions, device="cpu")
    elif args.mode == "batched":
        two_stage_metrics_batched(f_img, f_cap, pairs, args.k)
    else:
        two_stage_metrics(f_img, f_cap, grid, args.k)
    print(f"{args.mode} (k = {args.k}): {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()

"""Speed of MMCA's exact evaluation at chapter 05's default sizes: every pair of the first 200
test images and their 1000 captions (200,000 pairs through the cross unit), scored in tiles over
length-sorted images and captions (``MMCA.similarity``, the library) or in chunks of
``pair_chunk`` pairs in image-major order (``--order pairs``, the previous code), with an
untrained model (the cost does not depend on the weights).

    OMP_NUM_THREADS=1 python benchmarks/bench_mmca_eval.py [--order tiles|pairs]
"""

from __future__ import annotations

import argparse
import time

import torch

from xmrlib import text_features as tf
from xmrlib.data import first_images, get_dataset, load_precomp
from xmrlib.evaluation.scoring import encode_dataset
from xmrlib.models.mmca import MMCA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--order", choices=("tiles", "pairs"), default="tiles")
    args = parser.parse_args()
    test = first_images(load_precomp(get_dataset("shapes", profile="default"), "test"), 200)
    tf.register_store(tf.caption_feature_store(test.captions, device="cpu"))
    torch.manual_seed(0)
    model = MMCA(img_dim=test.images.shape[-1], embed_size=32, heads=4).eval()
    img, cap, lens = encode_dataset(model, test, batch_size=512, device="cpu", progress=False)
    img_lens = torch.as_tensor(test.n_regions)
    t0 = time.perf_counter()
    with torch.no_grad():
        if args.order == "tiles":
            scores = model.similarity(img, cap, lens, img_lens)
        else:
            n_img, n_cap = len(img), len(cap)
            rows = torch.arange(n_img).repeat_interleave(n_cap)
            cols = torch.arange(n_cap).repeat(n_img)
            scores = model.pair_scores(img, cap, rows, cols, lens, img_lens).view(n_img, n_cap)
    print(f"{args.order}: {time.perf_counter() - t0:.1f} s for {scores.numel():,} pairs")


if __name__ == "__main__":
    main()

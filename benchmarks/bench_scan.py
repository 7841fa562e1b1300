"""SCAN cross-attention cost on CPU at Flickr30K scale: the official-style loop vs xattn_scores.

Shapes: ``--images`` images x 36 regions, captions of 8-16 words (about 12), d = 1024, random
l2-normalised features. The loop (one caption at a time over all images, attended d-dimensional
contexts, as in ``kuanghuei/SCAN`` model.py) is timed on ``--captions`` captions; ours (t2i, the
loop's direction, and i2t) and the floor (one matrix product of all words x all regions, the
least any exact method must compute) on the same captions, all in one process. Memory: peak
RSS of a child process scoring 5000 images (COCO 5K) against a slice of captions read from a
memory-mapped file; the full 25 000 captions are estimated from it. Times are the best of
``--repeats`` runs taken in turn. The loop is bound by memory traffic (its (n_img, L, d)
temporaries), so its time, and every ratio to it, swings with other processes' load; the ratio
to the floor is the steadier figure.

    OMP_NUM_THREADS=1 python benchmarks/bench_scan.py --images 1000 --captions 200
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from xmrlib.models.scan_kernel import xattn_scores


def features(n: int, length: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, length, d, generator=g)
    return x.div_(x.norm(dim=-1, keepdim=True))  # in place: no second copy in the peak RSS


def loop_scores(images: torch.Tensor, captions: torch.Tensor, cap_lens: torch.Tensor
                ) -> torch.Tensor:
    """t2i LSE, clipped_l2norm, lambda 9 / 6, computed one caption at a time (official style)."""
    cols = []
    for j in range(captions.shape[0]):
        cap = captions[j, :cap_lens[j]].unsqueeze(0).repeat(images.shape[0], 1, 1)
        attn = torch.bmm(images, cap.transpose(1, 2))  # (n_img, R, L)
        attn = torch.nn.functional.leaky_relu(attn, 0.1)
        attn = attn / (attn.pow(2).sum(2, keepdim=True).sqrt() + 1e-8)
        attn = torch.softmax(attn.transpose(1, 2) * 9.0, dim=2)  # (n_img, L, R)
        ctx = torch.bmm(attn, images)  # (n_img, L, d)
        cos = (cap * ctx).sum(2) / (cap.norm(dim=2) * ctx.norm(dim=2)).clamp(min=1e-8)
        cols.append(torch.log(torch.exp(cos * 6.0).sum(1, keepdim=True)) / 6.0)
    return torch.cat(cols, 1)


def timed(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Outputs and the best of ``repeats`` wall times of every function, run in turn (so that
    load from other processes hits all of them alike)."""
    outs, best = {}, {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return outs, best


def memory_child(n_img: int, n_cap: int, d: int, folder: str) -> None:
    """Score n_img images (in RAM) against n_cap memory-mapped captions; print peak RSS (MB)."""
    images = features(n_img, 36, d, 0)
    caps = np.load(Path(folder) / "caps.npy", mmap_mode="r")
    lens = np.load(Path(folder) / "lens.npy")
    t0 = time.perf_counter()
    with torch.no_grad():
        out = xattn_scores(images, caps, lens, chunk_size=(500, 64))
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{peak:.0f} {dt:.2f} {tuple(out.shape)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--captions", type=int, default=200)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--mem-captions", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs of each")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        memory_child(int(a.child[0]), int(a.child[1]), int(a.child[2]), a.child[3])
        return
    torch.set_grad_enabled(False)
    images = features(a.images, 36, a.dim, 0)
    g = torch.Generator().manual_seed(1)
    lens = torch.randint(8, 17, (a.captions,), generator=g)
    caps = features(a.captions, int(lens.max()), a.dim, 2)
    words = torch.cat([caps[j, :lens[j]] for j in range(a.captions)])  # (sum L, d)
    outs, best = timed({
        "loop": lambda: loop_scores(images, caps, lens),
        "t2i": lambda: xattn_scores(images, caps, lens),
        "i2t": lambda: xattn_scores(images, caps, lens, attention="i2t", lambda_softmax=4.0),
        "floor": lambda: images.reshape(-1, a.dim) @ words.t()}, a.repeats)
    t_loop, t_ours, t_i2t, t_floor = best["loop"], best["t2i"], best["i2t"], best["floor"]
    err = float((outs["loop"] - outs["t2i"]).abs().max())
    print(f"{a.images} images x 36 regions x {a.captions} captions (mean length "
          f"{lens.float().mean():.1f}), d = {a.dim}, threads = {torch.get_num_threads()}, "
          f"best of {a.repeats}")
    print(f"{'method':<34}{'seconds':>9}{'vs loop':>9}{'/ floor':>9}")
    for name, t, loop in [("official-style loop (t2i)", t_loop, True),
                          ("xattn_scores t2i (ours)", t_ours, True),
                          ("xattn_scores i2t (ours)", t_i2t, False),
                          ("floor: one words x regions matmul", t_floor, True)]:
        vs_loop = f"{t_loop / t:>8.1f}x" if loop else f"{'-':>9}"
        print(f"{name:<34}{t:>9.3f}{vs_loop}{t / t_floor:>8.2f}x")
    print(f"max |loop - ours| = {err:.2e}")

    with tempfile.TemporaryDirectory() as folder:
        n = a.mem_captions
        mlens = torch.randint(8, 17, (n,), generator=g)
        np.save(Path(folder) / "caps.npy", features(n, 32, a.dim, 3).numpy())
        np.save(Path(folder) / "lens.npy", mlens.numpy())
        out = subprocess.run([sys.executable, __file__, "--child", "5000", str(n),
                              str(a.dim), folder], capture_output=True, text=True, check=True)
        peak, secs, _ = out.stdout.split(maxsplit=2)
    inputs = 5000 * 36 * a.dim * 4 / 2**20
    full_out = 5000 * 25000 * 4 / 2**20
    estimate = float(peak) - 5000 * n * 4 / 2**20 + full_out
    print(f"COCO 5K memory (measured): 5000 images x {n} memory-mapped captions: peak RSS "
          f"{float(peak):.0f} MB (images in RAM {inputs:.0f} MB), {float(secs):.1f} s")
    print(f"COCO 5K memory (estimated for 25000 captions: same chunks, full output "
          f"{full_out:.0f} MB): {estimate:.0f} MB; time about "
          f"{float(secs) * 25000 / n / 60:.0f} min on this CPU")


if __name__ == "__main__":
    main()

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

Two end-to-end modes measure what the library does at the papers' test sizes instead of
extrapolating from the kernel (both with the ``full`` profile's SCAN t2i LSE: embedding 1024,
words 300, bi-GRU):

* ``--coco5k FOLDER``: writes (once) a COCO ``testall`` split in SCAN's precomp layout into
  FOLDER (5000 x 36 x 2048 float32 non-negative sparse features, 1.4 GB, and 25 000 captions),
  then runs :func:`xmrlib.evaluation.evaluate` with protocol ``5k`` on it in a child process
  that reads the features memory-mapped, as ``reproduce evaluate`` does. Prints the wall time
  of each stage (encoding, scoring, recalls) and the peak resident memory, split into
  anonymous memory (what the process allocates) and file-backed pages (the memory-mapped
  features, which the kernel can drop), sampled every 0.2 s.
* ``--f30k1k``: Flickr30K's 1K test, 1000 images x 5000 captions at d = 1024: ``xattn_scores``
  on all 5000 captions against the official evaluation loop (``shard_xattn_t2i``: shards of
  128 images x 128 captions, one caption at a time inside a shard) on the first ``--captions``
  captions, whose time is multiplied by 5000 / ``--captions`` (labelled *extrapolated*).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_scan.py --coco5k build/coco5k
    OMP_NUM_THREADS=1 python benchmarks/bench_scan.py --f30k1k --captions 250
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


def official_shard_loop(images: torch.Tensor, captions: torch.Tensor, cap_lens: torch.Tensor,
                        shard: int = 128) -> torch.Tensor:
    """The official evaluation's ``shard_xattn_t2i``: shards of ``shard`` images x ``shard``
    captions, each scored by the per-caption loop (:func:`loop_scores`)."""
    out = torch.zeros(images.shape[0], captions.shape[0])
    for i0 in range(0, images.shape[0], shard):
        for j0 in range(0, captions.shape[0], shard):
            out[i0:i0 + shard, j0:j0 + shard] = loop_scores(
                images[i0:i0 + shard], captions[j0:j0 + shard], cap_lens[j0:j0 + shard])
    return out


def f30k1k(n_loop: int, dim: int, n_img: int = 1000, n_cap: int = 5000) -> None:
    """Flickr30K 1K test (1000 x 5000): ours measured in full, the official loop on
    ``n_loop`` captions and extrapolated to ``n_cap``."""
    torch.set_grad_enabled(False)
    images = features(n_img, 36, dim, 0)
    lens = torch.randint(8, 17, (n_cap,), generator=torch.Generator().manual_seed(1))
    caps = features(n_cap, int(lens.max()), dim, 2)
    def clocked(fn):
        """fn() with its wall and CPU seconds (CPU: less sensitive to other processes)."""
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - w0, time.process_time() - c0

    ours, w_ours, c_ours = clocked(lambda: xattn_scores(images, caps, lens))
    loop, w_loop, c_loop = clocked(
        lambda: official_shard_loop(images, caps[:n_loop], lens[:n_loop]))
    err = float((loop - ours[:, :n_loop]).abs().max())
    scale = n_cap / n_loop
    print(f"Flickr30K 1K test ({n_img} x {n_cap}): {n_img} images x 36 regions x {n_cap} captions (mean length "
          f"{lens.float().mean():.1f}), d = {dim}, threads = {torch.get_num_threads()}")
    print(f"xattn_scores t2i, all {n_cap} captions (measured): {c_ours:.1f} s CPU "
          f"({w_ours:.1f} s wall)")
    print(f"official shard_xattn_t2i loop, {n_loop} captions (measured): {c_loop:.1f} s CPU "
          f"({w_loop:.1f} s wall); {n_cap} captions (extrapolated x{scale:g}): "
          f"{c_loop * scale:.0f} s CPU = {c_loop * scale / c_ours:.1f}x ours")
    print(f"max |loop - ours| on the measured slice = {err:.2e}")


# ----------------------------------------------------------------------------- COCO 5K

COCO_IMAGES, COCO_REGIONS, COCO_DIM = 5000, 36, 2048


def coco_caption_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Words per caption: 8-16 uniformly (COCO captions average about 10-11 words), with a
    tail of 0.1 % at 17-40 words so that padding to the longest caption costs what it would."""
    rng = np.random.default_rng(seed)
    words = rng.integers(8, 17, n)
    tail = rng.choice(n, max(1, n // 1000), replace=False)
    words[tail] = rng.integers(17, 41, len(tail))
    words[tail[0]] = 40
    return words


def write_coco_testall(folder: Path) -> None:
    """COCO ``testall`` in SCAN's precomp layout: ``testall_ims.npy`` (5000, 36, 2048) float32,
    ReLU-like (about 70 % exact zeros, like bottom-up-attention features), and
    ``testall_caps.txt`` (25 000 captions of made-up words). Written once; kept if present."""
    from bench_scale import made_up_words  # noqa: E402  (sibling benchmark)

    ims, caps = folder / "testall_ims.npy", folder / "testall_caps.txt"
    if ims.exists() and caps.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(ims.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32,
                                    shape=(COCO_IMAGES, COCO_REGIONS, COCO_DIM))
    rng = np.random.default_rng(0)
    for i0 in range(0, COCO_IMAGES, 250):
        block = rng.standard_normal((min(250, COCO_IMAGES - i0), COCO_REGIONS, COCO_DIM),
                                    dtype=np.float32)
        out[i0:i0 + len(block)] = np.maximum(block - 0.5, 0.0) * 2.0
    out.flush()
    del out
    ims.with_suffix(".tmp.npy").rename(ims)
    words = np.asarray(made_up_words(1000))
    rng = np.random.default_rng(1)
    lines = [" ".join(rng.choice(words, k)) for k in coco_caption_lengths(5 * COCO_IMAGES)]
    caps.write_text("\n".join(lines) + "\n", encoding="utf-8")


class MemoryWatch:
    """Peak VmRSS, RssAnon and RssFile of this process (MiB), sampled every ``interval`` s by
    a thread; ``log`` (a callable) gets a line every ``every`` s."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, interval: float = 0.2, every: float = 60.0, log=print) -> None:
        import threading

        self.peak = dict.fromkeys(self.FIELDS, 0.0)
        self.interval, self.every, self.log = interval, every, log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.stage, self.t0 = "start", time.perf_counter()

    def sample(self) -> dict[str, float]:
        now = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in self.FIELDS:
                now[key] = int(line.split()[1]) / 1024
        for k, v in now.items():
            self.peak[k] = max(self.peak[k], v)
        return now

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            now = self.sample()
            if time.perf_counter() - last >= self.every:
                last = time.perf_counter()
                self.log(f"[{last - self.t0:7.0f} s] {self.stage}: RSS {now['VmRSS']:.0f} MiB "
                         f"(anon {now['RssAnon']:.0f}, file {now['RssFile']:.0f}); peak "
                         f"{self.peak['VmRSS']:.0f}")

    def __enter__(self) -> "MemoryWatch":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def coco5k_child(folder: str) -> None:
    """Evaluate the full-profile SCAN on ``folder``'s testall (protocol 5k) and print JSON:
    stage times (s) and peak memory (MiB)."""
    import json

    from xmrlib.data import load_precomp
    from xmrlib.evaluation import evaluate
    from xmrlib.models import build_model
    from xmrlib.vocab import Vocabulary

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    torch.manual_seed(0)
    with MemoryWatch(log=log) as mem:
        data = load_precomp(folder, "testall")
        vocab = Vocabulary.build(data.captions).to_dict()
        model = build_model("scan", vocab=vocab, img_dim=COCO_DIM, embed_size=1024,
                            word_dim=300, lambda_softmax=9.0, lambda_lse=6.0)
        times: dict[str, float] = {}
        similarity, calls = model.similarity, [0]

        def timed_similarity(*args, **kwargs):  # marks the end of encoding, logs progress
            if not calls[0]:
                times["encode_s"], times["encode_cpu_s"] = clock()
                mem.stage = "scoring"
            calls[0] += 1
            out = similarity(*args, **kwargs)
            wall, cpu = clock()
            log(f"[{time.perf_counter() - mem.t0:7.0f} s] scored caption chunk {calls[0]} "
                f"({wall:.0f} s wall, {cpu:.0f} s CPU since the start)")
            times["score_end"], times["score_cpu_end"] = wall, cpu
            return out

        def clock() -> tuple[float, float]:
            """Wall and CPU (user + system) seconds of this process since ``start``."""
            use = resource.getrusage(resource.RUSAGE_SELF)
            return time.perf_counter() - start, use.ru_utime + use.ru_stime - cpu0

        model.similarity = timed_similarity
        mem.stage = "encoding"
        start, cpu0 = time.perf_counter(), 0.0
        cpu0 = clock()[1]
        metrics = evaluate(model, data, protocol="5k", batch_size=128, device="cpu",
                           progress=False)
        total, total_cpu = clock()
    times["score_s"] = times.pop("score_end") - times["encode_s"]
    times["score_cpu_s"] = times.pop("score_cpu_end") - times["encode_cpu_s"]
    times["recall_s"] = total - times["encode_s"] - times["score_s"]
    times["total_s"], times["total_cpu_s"] = total, total_cpu
    lens = np.array([len(c.split()) + 2 for c in data.captions])
    print(json.dumps({**times, **{f"peak_{k}_mib": v for k, v in mem.peak.items()},
                      "n_images": len(data.images), "n_captions": len(data.captions),
                      "mean_tokens": float(lens.mean()), "max_tokens": int(lens.max()),
                      "threads": torch.get_num_threads(), "rsum": metrics["rsum"]}))


def coco5k(folder: Path) -> None:
    """Write the COCO testall fixture if needed, evaluate it in a child process, report."""
    import json

    t0 = time.perf_counter()
    write_coco_testall(folder)
    print(f"testall fixture in {folder} ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    out = subprocess.run([sys.executable, __file__, "--coco5k-child", str(folder)],
                         stdout=subprocess.PIPE, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    cap_mib = r["n_captions"] * r["max_tokens"] * 1024 * 4 / 2**20
    print(f"COCO 5K, SCAN t2i LSE (full profile, d = 1024), {r['n_images']} images x 36 x "
          f"{COCO_DIM} memory-mapped, {r['n_captions']} captions (mean {r['mean_tokens']:.1f} "
          f"tokens, longest {r['max_tokens']}), threads = {r['threads']}")
    print(f"wall time: encoding {r['encode_s']:.0f} s, scoring {r['score_s']:.0f} s, recalls "
          f"{r['recall_s']:.1f} s, total {r['total_s']:.0f} s ({r['total_s'] / 60:.1f} min)")
    print(f"CPU time (user + system; less sensitive to other processes' load): encoding "
          f"{r['encode_cpu_s']:.0f} s, scoring {r['score_cpu_s']:.0f} s, total "
          f"{r['total_cpu_s']:.0f} s ({r['total_cpu_s'] / 60:.1f} min)")
    print(f"peak memory: RSS {r['peak_VmRSS_mib']:.0f} MiB = anonymous {r['peak_RssAnon_mib']:.0f}"
          f" + file-backed {r['peak_RssFile_mib']:.0f} (peaks of each, sampled every 0.2 s); "
          f"caption embeddings padded to the longest caption: {cap_mib:.0f} MiB")
    print(json.dumps(r))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--captions", type=int, default=200)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--mem-captions", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs of each")
    p.add_argument("--coco5k", type=Path, metavar="FOLDER",
                   help="evaluate the full-profile SCAN on a COCO testall written into FOLDER")
    p.add_argument("--f30k1k", action="store_true",
                   help="Flickr30K 1K test: ours in full vs the official loop on --captions")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--coco5k-child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        memory_child(int(a.child[0]), int(a.child[1]), int(a.child[2]), a.child[3])
        return
    if a.coco5k_child:
        coco5k_child(a.coco5k_child)
        return
    if a.coco5k:
        coco5k(a.coco5k)
        return
    if a.f30k1k:
        f30k1k(a.captions, a.dim)
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

"""Training and evaluation cost at Flickr30K scale: the ``full`` profile's VSE++ (chapter 03)
and SCAN t2i LSE (chapter 04) on synthetic precomp-shaped data, with bfloat16 autocast off and on.

Data: ``--scale`` x 29 000 training images with 5 captions each (145 000 captions) and
``--scale`` x 1000 test images (5000 captions), ``--regions`` x ``--dim`` region features
(36 x 2048, the bottom-up-attention layout of ``f30k_precomp``). Features are uniform in [0, 1)
(non-negative, like pooled CNN activations), drawn by a torch generator seeded per split on the
device itself: nothing is downloaded or written. Captions are 8-16 words drawn from 1000
made-up words, so the real vocabulary and tokeniser run. Random data carries no signal: the
recalls are chance and only the costs mean anything.

Where the features live: with ``--features device`` (default) the training features stay on
the device and batches are gathered there, so the times are the model's steps alone; with
``--features host`` they are a numpy array in RAM (8.5 GB at scale 1) read by
:func:`xmrlib.data.make_loader`, as real memory-mapped features are, so every step also copies
its batch to the device. The test split is always a numpy array in RAM (0.3 GB at scale 1),
because :func:`xmrlib.evaluation.evaluate` reads numpy features.

For each model and each ``--amp`` setting (``TrainConfig.amp``; on CUDA ``auto`` is ``bf16``):

* training: ``--warmup-steps`` untimed steps (first-call set-up), then one epoch of
  :func:`xmrlib.train.fit` with the chapter's ``full`` settings (batch 128, Adam, clipping),
  or its first ``--max-steps`` steps: the epoch time is then the mean step time x the steps of
  an epoch, labelled *extrapolated*. No checkpoint is written inside the timed steps.
* evaluation: one :func:`~xmrlib.evaluation.evaluate` of the test split (protocol 1k). The
  library evaluates without autocast; the bf16 rows run it under bf16 autocast to show what
  that would change.
* peak memory above the level before the phase: ``torch.cuda.max_memory_allocated`` on CUDA
  (model, gradients, Adam state and activations; not the resident features), the peak RSS
  increase (:class:`xmrlib.costs.PeakRSS`, a lower bound) elsewhere.

Prints a markdown table; ``--out FILE`` also writes JSON (device, torch version, settings, rows),
rewritten after every row.

    python benchmarks/bench_scale.py --device cuda --out scale.json            # on a GPU
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py --device cpu --scale 0.01 --max-steps 5
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmrlib.config import chapter_config
from xmrlib.costs import PeakMemory, count_parameters
from xmrlib.data import CaptionDataset, CaptionLoader, PrecompData, make_loader
from xmrlib.evaluation import evaluate
from xmrlib.models import build_model
from xmrlib.models.vsepp import VSEPP_FLAGS
from xmrlib.runs import chapter_model_config, chapter_train_config
from xmrlib.train import fit
from xmrlib.utils import atomic_write_json, device_name, resolve_device

F30K_TRAIN_IMAGES, F30K_TEST_IMAGES, CAPTIONS_PER_IMAGE = 29_000, 1000, 5
CAPTION_WORDS = (8, 16)  # shortest and longest synthetic caption
TEST_SEED_OFFSET = 10_000  # the test split is drawn with seed + this
MODEL_CHAPTERS = {"vsepp": "03", "scan": "04"}


def made_up_words(n: int = 1000) -> list[str]:
    """``n`` distinct two-syllable words ("baba", "babe", ...), always the same ones."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = ["".join(p) for p in itertools.product(syllables, repeat=2)]
    if n > len(words):
        raise ValueError(f"made_up_words: at most {len(words)} words, asked for {n}")
    return words[:n]


def synthetic_captions(n: int, seed: int, words: list[str]) -> list[str]:
    """``n`` captions of 8-16 uniformly drawn ``words``, from a CPU generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = CAPTION_WORDS
    lengths = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    ids = torch.randint(0, len(words), (n, hi), generator=g).tolist()
    return [" ".join(words[i] for i in row[:k]) for row, k in zip(ids, lengths)]


def synthetic_split(split: str, n_images: int, regions: int, dim: int, seed: int,
                    device: torch.device, on_device: bool) -> PrecompData:
    """A precomp-shaped split: (n_images, regions, dim) features and 5 captions per image.

    Features come from a generator on ``device`` seeded ``seed`` (the same seed gives the same
    tensor on the same kind of device). ``on_device`` keeps them there as a tensor, else they
    are moved to a numpy array in RAM, the form :func:`xmrlib.data.make_loader` and
    :func:`xmrlib.evaluation.evaluate` read.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    feats = torch.rand((n_images, regions, dim), generator=g, device=device)
    images: Tensor | np.ndarray = feats if on_device else feats.cpu().numpy()
    captions = synthetic_captions(CAPTIONS_PER_IMAGE * n_images, seed, made_up_words())
    return PrecompData(root=Path("synthetic"), split=split, images=images, captions=captions,
                       captions_per_image=CAPTIONS_PER_IMAGE,
                       n_regions=np.full(n_images, regions, dtype=np.int64),
                       manifest={"synthetic": {"n_images": n_images, "regions": regions,
                                               "dim": dim, "seed": seed}})


class DeviceCaptionDataset(CaptionDataset):
    """:class:`~xmrlib.data.CaptionDataset` whose images are a tensor already on the device:
    a batch gathers its images there instead of copying them from RAM."""

    def batch(self, idx: np.ndarray) -> dict[str, Tensor]:
        """The batch dict of caption indices ``idx``, images on the features' device."""
        idx = np.asarray(idx, dtype=np.int64)
        feats: Tensor = self.data.images
        img = torch.from_numpy(idx // self.data.captions_per_image)
        lengths = self.lengths[idx]
        return {"images": feats[img.to(feats.device)],
                "n_regions": torch.full((len(idx),), feats.shape[1], dtype=torch.long),
                "tokens": self.tokens[idx, : int(lengths.max())], "lengths": lengths,
                "image_idx": img, "caption_idx": torch.from_numpy(idx)}


def train_loader(data: PrecompData, tokenizer: Any, batch_size: int, seed: int) -> CaptionLoader:
    """Shuffled caption batches: gathered on the device for tensor features, else the
    library's loader."""
    if isinstance(data.images, Tensor):
        return CaptionLoader(DeviceCaptionDataset(data, tokenizer), batch_size, shuffle=True,
                             seed=seed)
    return make_loader(data, tokenizer, batch_size, shuffle=True, seed=seed)


def model_config(name: str, train: PrecompData) -> dict[str, Any]:
    """Constructor arguments of the ``full`` profile's model, as its chapter builds it."""
    chapter = MODEL_CHAPTERS[name]
    if name == "vsepp":
        return chapter_model_config(chapter, "full", train, **VSEPP_FLAGS)
    c = chapter_config(chapter, "full")
    return chapter_model_config(chapter, "full", train, attention="t2i", agg="LSE",
                                lambda_softmax=c["lambda_softmax_t2i"],
                                lambda_lse=c["lambda_lse_t2i"], warmup=c["warmup"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_row(name: str, config: dict[str, Any], loader: CaptionLoader, test: PrecompData,
              amp: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Time ``args.warmup_steps`` + a (possibly cut) epoch of training and one evaluation."""
    cfg = chapter_train_config(MODEL_CHAPTERS[name], "full", seed=args.seed, epochs=1, amp=amp,
                               batch_size=args.batch_size)
    torch.manual_seed(args.seed)
    model = build_model(name, **config)
    steps_per_epoch = len(loader)
    n_steps = min(args.max_steps or steps_per_epoch, steps_per_epoch)
    with tempfile.TemporaryDirectory() as tmp, PeakMemory(device) as train_mem:
        if args.warmup_steps:
            fit(model, loader, None, cfg, Path(tmp) / "warmup", resume=False, device=device,
                progress=False, max_steps=args.warmup_steps)
        _sync(device)
        t0 = time.perf_counter()
        result = fit(model, loader, None, cfg, Path(tmp) / "timed", resume=False, device=device,
                     progress=not args.quiet, max_steps=n_steps)
        _sync(device)
        train_s = time.perf_counter() - t0
    steps = len(result.history["steps"])
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp != "off"
                else nullcontext())
    with PeakMemory(device) as eval_mem, autocast:
        t0 = time.perf_counter()
        metrics = evaluate(model, test, protocol=cfg.eval_protocol,
                           batch_size=cfg.eval_batch_size, device=device)
        eval_s = time.perf_counter() - t0
    step_s = train_s / steps
    return {"model": name, "amp": amp, "params": count_parameters(model),
            "batch_size": cfg.batch_size, "steps_per_epoch": steps_per_epoch,
            "steps_timed": steps, "train_s": train_s, "step_s": step_s,
            "epoch_s": step_s * steps_per_epoch, "epoch_extrapolated": steps < steps_per_epoch,
            "eval_s": eval_s, "eval_protocol": cfg.eval_protocol, "rsum": metrics["rsum"],
            "train_peak_mib": train_mem.mib, "eval_peak_mib": eval_mem.mib}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table; extrapolated epoch times are marked."""
    lines = ["| model | amp | params (M) | steps timed / epoch | step (s) | epoch (s) | "
             "eval (s) | train peak (MiB) | eval peak (MiB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        epoch = f"{r['epoch_s']:.1f}" + (" (extrapolated)" if r["epoch_extrapolated"] else "")
        lines.append(f"| {r['model']} | {r['amp']} | {r['params'] / 1e6:.2f} | "
                     f"{r['steps_timed']} / {r['steps_per_epoch']} | {r['step_s']:.3f} | "
                     f"{epoch} | {r['eval_s']:.2f} | {r['train_peak_mib']:.0f} | "
                     f"{r['eval_peak_mib']:.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of Flickr30K's 29 000 train / 1000 test images")
    p.add_argument("--regions", type=int, default=36)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--models", nargs="+", default=list(MODEL_CHAPTERS),
                   choices=list(MODEL_CHAPTERS))
    p.add_argument("--amp", nargs="+", default=["off", "bf16"], choices=["off", "bf16"],
                   help="TrainConfig.amp settings to compare (on CUDA, auto = bf16)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="time this many steps and extrapolate the epoch (default: a full epoch)")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed steps before timing")
    p.add_argument("--batch-size", type=int, default=None,
                   help="override the full profile's batch size (128)")
    p.add_argument("--features", default="device", choices=["device", "host"],
                   help="keep training features on the device or in RAM (see the docstring)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    p.add_argument("--quiet", action="store_true", help="no per-step progress bars")
    args = p.parse_args(argv)
    if args.scale <= 0 or args.regions < 1 or args.dim < 1:
        p.error("--scale, --regions and --dim must be positive")
    if (args.max_steps is not None and args.max_steps < 1) or args.warmup_steps < 0:
        p.error("--max-steps must be >= 1 and --warmup-steps >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and with ``--out`` writes) the report dict."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    n_train = max(1, round(F30K_TRAIN_IMAGES * args.scale))
    n_test = max(1, round(F30K_TEST_IMAGES * args.scale))
    print(f"device {device_name(device)}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; data: {n_train} train / {n_test} test images x "
          f"{args.regions} x {args.dim}, features on {args.features}", flush=True)
    t0 = time.perf_counter()
    train = synthetic_split("train", n_train, args.regions, args.dim, args.seed, device,
                            on_device=args.features == "device")
    test = synthetic_split("test", n_test, args.regions, args.dim,
                           args.seed + TEST_SEED_OFFSET, device, on_device=False)
    print(f"generated in {time.perf_counter() - t0:.1f} s", flush=True)
    rows: list[dict[str, Any]] = []
    report = {"device": device_name(device), "device_type": device.type,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "settings": {"scale": args.scale, "n_train_images": n_train,
                           "n_train_captions": len(train.captions), "n_test_images": n_test,
                           "n_test_captions": len(test.captions), "regions": args.regions,
                           "dim": args.dim, "vocab_words": len(made_up_words()),
                           "features": args.features, "max_steps": args.max_steps,
                           "warmup_steps": args.warmup_steps, "seed": args.seed,
                           "eval_autocast": "as the row's amp"},
              "rows": rows}
    for name in args.models:
        config = model_config(name, train)
        batch_size = args.batch_size or chapter_config(MODEL_CHAPTERS[name], "full")["batch_size"]
        loader = train_loader(train, build_model(name, **config).tokenize, batch_size, args.seed)
        for amp in args.amp:
            print(f"{name} amp={amp}: {len(loader)} steps per epoch ...", flush=True)
            r = bench_row(name, config, loader, test, amp, args, device)
            rows.append(r)
            print(f"  {r['steps_timed']} steps in {r['train_s']:.1f} s, evaluation "
                  f"{r['eval_s']:.2f} s", flush=True)
            if args.out:  # after every row: a crash later keeps what was measured
                atomic_write_json(args.out, report)
    print(markdown_table(rows))
    if device.type != "cuda":
        print("peak memory: RSS increase, a lower bound (memory an earlier row freed is reused)")
    if args.out:
        print(f"wrote {args.out}")
    return report

if __name__ == "__main__":
    main()

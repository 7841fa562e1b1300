"""Training speed of the dual encoders on the default Shapes set: one epoch of ``fit`` (no dev
evaluation) and one dev evaluation, for VSE++ and Kiros VSE at the chapter's default sizes.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py [--profile default] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from xmrlib.data import get_dataset, load_precomp, make_loader
from xmrlib.evaluation import evaluate
from xmrlib.models import build_model
from xmrlib.runs import chapter_model_config, chapter_train_config
from xmrlib.train import fit
from xmrlib.utils import device_name, resolve_device


def time_epoch(model_name: str, chapter: str, profile: str, device: str) -> dict[str, float]:
    """Seconds for one training epoch and one dev evaluation of ``model_name``."""
    root = get_dataset("shapes", profile=profile)
    train, dev = load_precomp(root, "train"), load_precomp(root, "dev")
    cfg = chapter_train_config(chapter, profile, epochs=1)
    torch.manual_seed(0)
    model = build_model(model_name, **chapter_model_config(chapter, profile, train))
    loader = make_loader(train, model.tokenize, cfg.batch_size, shuffle=True, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(model, loader, None, cfg, tmp, device=device, progress=False)
        t_epoch = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(model, dev, protocol=cfg.eval_protocol, device=device)
    t_eval = time.perf_counter() - t0
    return {"captions": len(train.captions), "steps": len(loader), "epoch_s": t_epoch,
            "steps_per_s": len(loader) / t_epoch, "dev_eval_s": t_eval}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    print(f"device: {device_name(dev)}, torch threads: {torch.get_num_threads()}")
    for name, chapter in (("vsepp", "03"), ("vse", "02")):
        r = time_epoch(name, chapter, args.profile, args.device)
        print(f"{name:6s} {args.profile}: {r['captions']} captions, {r['steps']} steps, "
              f"epoch {r['epoch_s']:.1f} s ({r['steps_per_s']:.1f} steps/s), "
              f"dev evaluation {r['dev_eval_s']:.2f} s")


if __name__ == "__main__":
    main()

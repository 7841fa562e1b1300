"""The run cache: a training run keyed by what defines it, trained once, then reloaded.

``fit_or_load`` keys run folders by a hash of (model, training config, data identity), so a later
chapter asking for the same run reuses the checkpoint instead of training again; the
``chapter_*`` functions build a chapter's run from its profile (:mod:`xmrlib.config`).
``python -m xmrlib.runs`` (also ``python -m xmrlib.train``) trains a chapter's dual encoder, on
several GPUs under ``torchrun``.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmrlib.distributed import dist_env
from xmrlib.models import build_model
from xmrlib.train import FitResult, TrainConfig, fit
from xmrlib.vocab import Vocabulary
from xmrlib.utils import (build_dir, config_hash, file_lock, lock_path, resolve_device,
                          seed_everything)


def data_identity(data: Any) -> dict[str, Any]:
    """What identifies a training split, by content: its split and sizes, the manifest (Shapes'
    generator settings, a cut by ``first_images``) and the content fingerprint of its files
    (:mod:`xmrlib.data.fingerprint`), each when present. Never the folder: moved data finds its
    runs, replaced data at the same path does not."""
    ident = {"split": data.split, "n_images": int(len(data.images)),
             "n_captions": len(data.captions)}
    if data.manifest:
        ident["manifest"] = config_hash(data.manifest)
    if getattr(data, "fingerprint", ""):
        ident["fingerprint"] = data.fingerprint
    if len(ident) == 3:
        raise ValueError(f"data_identity: split {data.split!r} of {data.root} has neither a "
                         "manifest nor a content fingerprint; load it with xmrlib.data")
    return ident


def run_data_identity(train_data: Any, dev_data: Any = None) -> dict[str, Any]:
    """:func:`data_identity` of the training split plus, under ``"dev"``, that of the dev split
    that selects the epoch (epochs selected on another dev set make another run)."""
    ident = data_identity(train_data)
    if dev_data is not None:
        ident["dev"] = data_identity(dev_data)
    return ident


#: TrainConfig fields added after runs were first keyed, with their defaults
LATER_FIELDS = {"weight_decay": 0.0}


def run_dir_for(model_name: str, model_config: dict[str, Any], cfg: TrainConfig,
                data_id: dict[str, Any], root: str | Path | None = None) -> Path:
    """``build/runs/<model>-<hash>``: the folder ``fit_or_load`` uses for this run."""
    train = asdict(cfg)
    for name, default in LATER_FIELDS.items():  # added later: in the key only when set, so
        if train[name] == default:              # earlier runs keep their folders
            del train[name]
    key = config_hash({"model": {"name": model_name, "config": model_config},
                       "train": train, "data": data_id})
    return Path(root or build_dir() / "runs") / f"{model_name}-{key}"


def planned_run(model_name: str, model_config: dict[str, Any], train_data: Any, dev_data: Any,
                cfg: TrainConfig, root: str | Path | None = None
                ) -> tuple[nn.Module, Path, dict[str, Any]]:
    """What :func:`fit_or_load` trains, without training: the seeded, untrained model, its run
    folder and the data identity that keys it (under torchrun, with the world size)."""
    _, world = dist_env()
    data_id = run_data_identity(train_data, dev_data)
    if world > 1:  # N processes of batch_size each: a different run from one process
        data_id["world_size"] = world
    seed_everything(cfg.seed)
    model = build_model(model_name, **model_config)
    run_dir = run_dir_for(model_name, model.config, cfg, data_id, root)  # defaults included
    return model, run_dir, data_id


def fit_or_load(model_name: str, model_config: dict[str, Any], train_data: Any, dev_data: Any,
                cfg: TrainConfig, device: str | torch.device = "auto", progress: bool = True,
                root: str | Path | None = None, owner: str | None = None) -> FitResult:
    """Train ``model_name`` on ``train_data`` unless the same run exists; then just load it.

    The run folder is keyed by a hash of the model's full config (defaults included), ``cfg``
    and the identity of the training and dev data; an interrupted run resumes. Under torchrun
    the loader is sharded by rank. ``owner``: the chapter whose named run this is
    (:func:`xmrlib.chapter_runs.chapter_run`), for the runner's log (:func:`note_run_use`).
    """
    from xmrlib.data import make_loader

    rank, world = dist_env()
    model, run_dir, data_id = planned_run(model_name, model_config, train_data, dev_data, cfg,
                                          root)
    loader = make_loader(train_data, model.tokenize, cfg.batch_size, shuffle=True,
                         seed=cfg.seed, rank=rank, world_size=world)
    return locked_fit(model, loader, dev_data, cfg, run_dir, data_id, device, progress, owner,
                      rank)


def locked_fit(model: nn.Module, loader: Any, dev_data: Any, cfg: TrainConfig, run_dir: Path,
               data_id: dict[str, Any], device: str | torch.device = "auto",
               progress: bool = True, owner: str | None = None, rank: int = 0) -> FitResult:
    """``fit`` (resuming) under the run's lock (:func:`run_lock`), noting in the chapter
    runner's log whether the run was trained or reloaded (:func:`note_run_use`)."""
    with run_lock(run_dir, rank):
        reloaded = (run_dir / "done.json").exists()
        result = fit(model, loader, dev_data, cfg, run_dir, resume=True, device=device,
                     progress=progress, data_id=data_id)
    if rank == 0:
        note_run_use(run_dir, reloaded, owner)
    return result


def note_run_use(run_dir: Path, reloaded: bool, owner: str | None = None) -> None:
    """Append a line to the log of the runs a chapter used (``XMR_RUN_LOG``, set by the chapter
    runner; nothing without it): the run, the chapter that owns it when another chapter reloads
    it by name (``owner``), and for a reloaded run its training seconds. The runner adds those
    of the chapter's own reloaded runs to its wall time: what the chapter costs when it trains
    them, the cost by which :func:`xmrlib.reproduce.parallel_order` orders a parallel build."""
    log = os.environ.get("XMR_RUN_LOG")
    if not log:
        return
    from xmrlib.costs import training_seconds

    entry = {"run": run_dir.name, "owner": owner, "reloaded": reloaded,
             "seconds": round(training_seconds(run_dir), 1) if reloaded else None}
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def run_lock(run_dir: Path, rank: int = 0) -> Any:
    """The lock of a run folder (:func:`xmrlib.utils.file_lock` on :func:`~xmrlib.utils.lock_path`
    of its name): chapters executed in parallel that ask for the same run train it once; the
    second reloads it. Under torchrun only rank 0 locks (the ranks train together)."""
    return file_lock(lock_path(run_dir.name)) if rank == 0 else nullcontext()


def chapter_train_config(chapter: str, profile: str, seed: int = 0, dataset: str = "shapes",
                         **overrides: Any) -> TrainConfig:
    """The ``TrainConfig`` of a chapter's profile on ``dataset`` (:mod:`xmrlib.config`), e.g.
    chapter "03"; model selection uses the data set's dev protocol."""
    from xmrlib.config import chapter_config

    c = chapter_config(chapter, profile, dataset=dataset)
    values = dict(epochs=c["epochs"], lr=c["lr"], lr_update=c["lr_update"],
                  batch_size=c["batch_size"], seed=seed, eval_protocol=c["dev_protocol"],
                  eval_batch_size=c["eval_batch_size"])
    values.update({k: c[k] for k in ("weight_decay", "eval_every") if k in c})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(values)


def run_vocabulary(train_data: Any, profile: str, dataset: str = "shapes") -> Vocabulary:
    """The vocabulary a run on ``train_data`` uses: the official file beside real features when
    present, else the training captions' words seen ``vocab_min_count`` times (the profile's
    value; 4 in ``full``, the official rule); see :func:`xmrlib.vocab.dataset_vocabulary`."""
    from xmrlib.config import chapter_config
    from xmrlib.vocab import dataset_vocabulary

    folder = None if dataset == "shapes" else train_data.root
    min_count = chapter_config("common", profile, dataset=dataset)["vocab_min_count"]
    return dataset_vocabulary(train_data.captions, folder, dataset, min_count=min_count)[0]


def chapter_model_config(chapter: str, profile: str, train_data: Any, dataset: str = "shapes",
                         **overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a chapter's dual encoder: the run's vocabulary
    (:func:`run_vocabulary`), feature size of the data, embedding sizes and margin of the
    chapter's profile."""
    from xmrlib.config import chapter_config

    c = chapter_config(chapter, profile, dataset=dataset)
    config = dict(vocab=run_vocabulary(train_data, profile, dataset).to_dict(),
                  img_dim=int(train_data.images.shape[-1]), embed_size=c["embed_size"],
                  word_dim=c["word_dim"], margin=c["margin"])
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def fit_chapter_model(chapter: str, model_name: str, train_data: Any, dev_data: Any,
                      profile: str, seed: int = 0, device: str | torch.device = "auto",
                      progress: bool = True, train_overrides: dict[str, Any] | None = None,
                      dataset: str = "shapes", **model_overrides: Any) -> FitResult:
    """Train (or reuse) the run a chapter defines, e.g. ``fit_chapter_model("03", "vsepp", ...)``.

    Later chapters call it with the same arguments to get chapter 03's VSE++ without training.
    """
    cfg = chapter_train_config(chapter, profile, seed=seed, dataset=dataset,
                               **(train_overrides or {}))
    config = chapter_model_config(chapter, profile, train_data, dataset=dataset, **model_overrides)
    return fit_or_load(model_name, config, train_data, dev_data, cfg, device=device,
                       progress=progress)


def main(argv: list[str] | None = None) -> int:
    """CLI: train a chapter's dual encoder, e.g. on several GPUs with
    ``torchrun --nproc_per_node 4 -m xmrlib.train --chapter 03 --model vsepp --profile full
    --dataset f30k_precomp --data-root DIR``; prints the run folder and the best dev metrics."""
    import argparse
    import sys

    from xmrlib.config import chapter_config
    from xmrlib.data import get_dataset, load_precomp

    p = argparse.ArgumentParser(prog="python -m xmrlib.train", description=main.__doc__)
    p.add_argument("--chapter", default="03", choices=["02", "03"])
    p.add_argument("--model", default="vsepp", choices=["vse", "vsepp"])
    p.add_argument("--profile", default="default")
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vse0", action="store_true", help="VSE0 flags: sum loss, no image norm")
    p.add_argument("--no-gather", action="store_true", help="DDP: negatives from the local batch")
    args = p.parse_args(argv)
    try:
        resolve_device(args.device)  # an unavailable device fails before any data is made
        chapter_config(args.chapter, args.profile, dataset=args.dataset)  # unknown names too
        root = get_dataset(args.dataset, data_root=args.data_root, profile=args.profile)
        train, dev = load_precomp(root, "train"), load_precomp(root, "dev")
        flags = {"max_violation": False, "image_norm": False} if args.vse0 else {}
        result = fit_chapter_model(args.chapter, args.model, train, dev, args.profile,
                                   seed=args.seed, device=args.device,
                                   train_overrides={"gather_negatives": not args.no_gather},
                                   dataset=args.dataset, **flags)
    except (ValueError, FileNotFoundError) as exc:  # DataError, unknown profile, bad device ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if dist_env()[0] == 0:
        print(result.run_dir, json.dumps(result.best_metrics))
    return 0



if __name__ == "__main__":
    raise SystemExit(main())

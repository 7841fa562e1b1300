"""DistributedDataParallel on CPU (gloo, 2 processes spawned here): the gradient of one DDP step
on a global batch of 8, split 4 + 4, against single-process references computed in this test.

* With gathered negatives, the DDP gradient equals the gradient of the loss on the global batch,
  for the sum of violations (VSE0) and for the max violation (VSE++).
* Without gathering, each rank sees only its own 4 x 4 block of the score matrix, so the DDP
  gradient equals the sum of the per-shard gradients (gradient accumulation over shards) and
  *differs* from the global-batch gradient, for both losses: the pairs across shards are missing.
  (Issue 10 expects equality for the sum loss here; per step that does not hold, because the sum
  over a B x B matrix is not the sum of its two diagonal blocks. The sum loss on shards is an
  unbiased estimate of the all-pairs loss up to scale; the max violation on shards is not,
  because the hardest of 3 negatives is not the hardest of 7.)
* ``fit`` itself under DDP with gathering (two Adam steps, gradient clipping) ends with the same
  weights as ``fit`` in one process on the global batches.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from xmrlib.models.vsepp import VSEPP
from xmrlib.distributed import LossModule
from xmrlib.train import TrainConfig, fit

from test_models_vse import make_batch, tiny_vocab

pytestmark = pytest.mark.slow  # spawns process groups

B, WORLD = 8, 2
CASES = [(mv, gather) for mv in (False, True) for gather in (True, False)]


def _model(max_violation: bool) -> VSEPP:
    torch.manual_seed(0)
    return VSEPP(tiny_vocab().to_dict(), img_dim=6, embed_size=8, word_dim=5,
                 max_violation=max_violation)


def _shard(batch: dict, rank: int) -> dict:
    size = B // WORLD
    return {k: v[rank * size:(rank + 1) * size] for k, v in batch.items()}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    batch = _shard(make_batch(B, seed=1), rank)
    results = {}
    for mv, gather in CASES:
        model = _model(mv)
        ddp = torch.nn.parallel.DistributedDataParallel(LossModule(model))
        loss, _ = ddp(batch, 0.5, gather)
        (loss * WORLD).backward()
        results[(mv, gather)] = _grads(model)
    loaders = [[_shard(make_batch(B, seed=s), rank)] for s in (1, 2)]
    cfg = TrainConfig(epochs=2, lr=0.01, lr_update=None, batch_size=B // WORLD, amp="off")
    fitted = fit(_model(True), _Chain(loaders), None, cfg, os.path.join(out_dir, "run"),
                 resume=False, device="cpu", progress=False)
    results["fit"] = {k: v.clone() for k, v in fitted.model.state_dict().items()}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


class _Chain:
    """A loader yielding one batch per epoch: epoch e gives ``batches[e]``."""

    def __init__(self, batches: list[list[dict]]) -> None:
        self.batches, self.epoch = batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        return iter(self.batches[self.epoch])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _reference_grads(max_violation: bool, shards: bool) -> dict[str, torch.Tensor]:
    """One process: the global-batch loss, or the sum of the per-shard losses."""
    model = _model(max_violation)
    batch = make_batch(B, seed=1)
    parts = [_shard(batch, r) for r in range(WORLD)] if shards else [batch]
    total = sum(model.loss(part, 0.5)[0] for part in parts)
    total.backward()
    return _grads(model)


def _max_diff(a: dict, b: dict) -> float:
    """Largest difference relative to the largest gradient entry (float32 sums differ in order)."""
    scale = max(float(b[k].abs().max()) for k in b)
    return max(float((a[k] - b[k]).abs().max()) for k in a) / scale


@pytest.mark.parametrize("max_violation", [False, True])
def test_gathered_ddp_gradient_equals_global_batch(ddp_results, max_violation):
    ref = _reference_grads(max_violation, shards=False)
    for rank in range(WORLD):
        assert _max_diff(ddp_results[rank][(max_violation, True)], ref) < 1e-5


@pytest.mark.parametrize("max_violation", [False, True])
def test_ungathered_ddp_gradient_is_per_shard(ddp_results, max_violation):
    got = ddp_results[0][(max_violation, False)]
    assert _max_diff(got, _reference_grads(max_violation, shards=True)) < 1e-5
    assert _max_diff(got, _reference_grads(max_violation, shards=False)) > 1e-2


def test_fit_under_ddp_matches_single_process(ddp_results, tmp_path):
    cfg = TrainConfig(epochs=2, lr=0.01, lr_update=None, batch_size=B, amp="off")
    single = fit(_model(True), _Chain([[make_batch(B, seed=s)] for s in (1, 2)]), None, cfg,
                 tmp_path / "run", device="cpu", progress=False)
    want = single.model.state_dict()
    for rank in range(WORLD):
        got = ddp_results[rank]["fit"]
        assert max(float((got[k] - want[k]).abs().max()) for k in want) < 1e-6
    assert not torch.equal(want["img_enc.fc.weight"], _model(True).state_dict()["img_enc.fc.weight"])

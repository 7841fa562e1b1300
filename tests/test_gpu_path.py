"""The GPU path proven on the CPU: fake GPUs (tests/fake_cuda.py), torchrun's environment,
pinned-memory prefetching, device memory and the preflight dry run."""

from __future__ import annotations

import mmap
import threading
import time

import numpy as np
import pytest
import torch

from fake_cuda import FakeDeviceError, fake_gpus, mark
from xmrlib.costs import PeakMemory
from xmrlib.data.loaders import prefetch
from xmrlib.utils import configure_determinism, resolve_device, set_device


def _torchrun(monkeypatch, local_rank: int, world: int = 2) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


# --------------------------------------------------------------------------- the emulation itself

def test_fake_gpu_catches_what_a_gpu_would(monkeypatch):
    with fake_gpus(monkeypatch, count=1):
        layer = torch.nn.Linear(3, 2).to("cuda")
        x = torch.randn(4, 3)
        with pytest.raises(FakeDeviceError, match="same device"):
            layer(x)  # a host batch fed to a model on the GPU
        y = layer(x.to("cuda"))
        assert y.device == torch.device("cuda", 0) and y.is_cuda
        with pytest.raises(FakeDeviceError, match="numpy"):
            y.detach().numpy()
        w, b = layer.weight.detach().cpu(), layer.bias.detach().cpu()
        assert np.allclose(y.detach().cpu().numpy(), (x @ w.T + b).numpy())  # real values
        z = torch.zeros(2, device=y.device)  # allocated "where y is"
        assert mark(z) == 0 and mark(y[:, 0] + z[0]) == 0
        assert mark(y[torch.tensor([0, 1])]) == 0  # host indices into a device tensor are fine
        y.sum().backward()
        assert layer.weight.grad.device.type == "cuda"


# --------------------------------------------------------------------------- torchrun: defect 1

def test_torchrun_rank_gets_its_own_gpu(monkeypatch):
    with fake_gpus(monkeypatch, count=2) as gpu:
        assert resolve_device("cuda") == torch.device("cuda")  # one process: the current GPU
        _torchrun(monkeypatch, local_rank=1)
        for name in ("cuda", "auto", torch.device("cuda")):
            assert resolve_device(name) == torch.device("cuda", 1)
        assert resolve_device("cuda:0") == torch.device("cuda", 0)  # explicit index: as asked
        set_device(resolve_device("cuda"))
        assert gpu["calls"][-1] == ("set_device", 1) and gpu["current"] == 1
        assert torch.ones(2, device="cuda").device == torch.device("cuda", 1)
        _torchrun(monkeypatch, local_rank=2, world=3)
        with pytest.raises(ValueError, match="LOCAL_RANK=2.*2 GPU"):
            resolve_device("cuda")


def test_set_device_does_nothing_off_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(d))
    set_device(torch.device("cpu"))
    set_device(torch.device("cuda"))  # no index: already the current device
    assert calls == []


def test_fit_under_torchrun_trains_on_its_ranks_gpu(monkeypatch, tmp_path):
    """fit on rank 1 of 2: cuda:1, DDP's device_ids=[1] (not GPU 0), and GPU 1 is the current
    device before the process group is joined (NCCL's communicator uses the current device)."""
    from torch import nn

    import xmrlib.train as train
    from test_train import CFG, _model, _shuffled_loader

    wrapped, current = {}, []

    class DDP(nn.Module):  # records what DDP is given; the single rank trains as is
        def __init__(self, module, device_ids=None):
            super().__init__()
            self.module = module
            wrapped["device_ids"] = device_ids

        def forward(self, *args):
            return self.module(*args)

    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", DDP)
    with fake_gpus(monkeypatch, count=2) as gpu:
        monkeypatch.setattr(train, "init_distributed",
                            lambda dev: (current.append(gpu["current"]), (1, 2))[1])
        _torchrun(monkeypatch, local_rank=1)
        model = _model()
        cfg = train.TrainConfig(**{**CFG.__dict__, "gather_negatives": False})
        train.fit(model, _shuffled_loader(), None, cfg, tmp_path, progress=False, max_steps=2)
        assert current == [1] and wrapped["device_ids"] == [1]
        assert {p.device for p in model.parameters()} == {torch.device("cuda", 1)}


# --------------------------------------------------------------------------- determinism: defect 7

def test_deterministic_flags_on_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    configure_determinism(torch.device("cpu"))
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    configure_determinism(torch.device("cuda"))
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("XMR_DETERMINISTIC", raising=False)
    configure_determinism(torch.device("cuda"))
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        configure_determinism(torch.device("cuda"), strict=True)
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        torch.use_deterministic_algorithms(False)
        monkeypatch.setenv("XMR_DETERMINISTIC", "1")  # the switch the real-data guide names
        configure_determinism(torch.device("cuda"))
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# --------------------------------------------------------------------------- resume: defect 2

def test_rng_states_read_onto_a_device_restore_on_fewer_gpus(monkeypatch):
    """A checkpoint read with map_location on a GPU holds device tensors, and CUDA states for
    every GPU of the machine that saved it: both restore (torch accepts CPU byte tensors only)."""
    from xmrlib.checkpoint import rng_state, set_rng_state

    real = torch.set_rng_state

    def cpu_only(state):
        if mark(state) is not None:
            raise TypeError("RNG state must be a torch.ByteTensor")
        real(state)

    monkeypatch.setattr(torch, "set_rng_state", cpu_only)
    with fake_gpus(monkeypatch, count=2):
        saved = rng_state(None)
        on_gpu = {**saved, "torch": saved["torch"].to("cuda"),
                  "cuda": [s.to("cuda") for s in saved["cuda"]]}
    expected = torch.rand(3)
    with fake_gpus(monkeypatch, count=1) as gpu:
        set_rng_state(on_gpu, None)
        assert [c for c in gpu["calls"] if c[0] == "set_rng_state"] == [("set_rng_state", 0)]
        assert torch.equal(torch.rand(3), expected)


def test_resume_on_a_gpu_equals_the_uninterrupted_run(monkeypatch, tmp_path):
    """Killed twice on a 2-GPU machine, resumed on a 1-GPU one: the weights and history of an
    uninterrupted CPU run."""
    from test_train import CFG, _last_weights, _model, _shuffled_loader
    from xmrlib.train import fit

    full = fit(_model(), _shuffled_loader(), None, CFG, tmp_path / "cpu", progress=False,
               device="cpu")
    for count, stop in ((2, 9), (2, 5), (1, None)):
        with fake_gpus(monkeypatch, count=count):
            part = fit(_model(), _shuffled_loader(), None, CFG, tmp_path / "gpu",
                       progress=False, device="cuda", max_steps=stop)
    a, b = _last_weights(tmp_path / "cpu"), _last_weights(tmp_path / "gpu")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert part.history == full.history


# --------------------------------------------------------------------------- loader: defect 8

def _batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield {"images": torch.randn(4, 3, 5, generator=g), "lengths": torch.arange(4)}


def test_prefetch_keeps_contents_and_order():
    direct = list(_batches(7))
    fetched = list(prefetch(_batches(7), depth=3))
    assert len(fetched) == len(direct)
    for a, b in zip(direct, fetched):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_prefetch_with_caption_loader_is_the_same_epoch(shapes_root):
    from xmrlib.data import load_precomp, make_loader
    from xmrlib.vocab import Vocabulary

    data = load_precomp(shapes_root, "train")
    loader = make_loader(data, Vocabulary.build(data.captions), 32, seed=3)
    loader.set_epoch(2)
    direct = list(loader)
    fetched = list(prefetch(loader, depth=2))
    assert [b["caption_idx"].tolist() for b in fetched] == [b["caption_idx"].tolist()
                                                            for b in direct]
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(direct, fetched))


def test_prefetch_builds_ahead_and_pins(monkeypatch):
    built = []

    def slow():
        for i in range(4):
            built.append(i)
            yield {"x": torch.full((2,), float(i))}

    with fake_gpus(monkeypatch, count=2) as gpu:
        it = prefetch(slow(), depth=2, pin_memory=True, device=torch.device("cuda", 1))
        first = next(it)
        assert ("set_device", 1) in gpu["calls"]  # the thread pins for this rank's GPU
        deadline = time.time() + 5
        while len(built) < 3 and time.time() < deadline:  # the thread runs ahead of us
            time.sleep(0.01)
        assert len(built) >= 3
        assert first["x"].is_pinned() and mark(first["x"]) is None  # pinned host memory
        assert [float(b["x"][0]) for b in it] == [1.0, 2.0, 3.0]


def test_prefetch_raises_the_workers_error_and_stops_when_closed():
    def broken():
        yield {"x": torch.zeros(1)}
        raise OSError("disk gone")

    it = prefetch(broken())
    next(it)
    with pytest.raises(OSError, match="disk gone"):
        next(it)

    it = prefetch(_batches(10_000), depth=1)
    next(it)
    it.close()  # an interrupted epoch (max_steps, an exception) must not leave the thread
    assert not any(t.name == "xmrlib-prefetch" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ValueError, match="depth"):
        next(prefetch(_batches(1), depth=0))


def test_fit_on_a_gpu_prefetches_pinned_batches_and_reads_losses_per_save(monkeypatch,
                                                                          tmp_path):
    """On a GPU fit builds batches ahead in pinned memory, never reads a step's loss on the
    host (one transfer per checkpoint), and selects deterministic cuDNN kernels; the history
    is the CPU run's."""
    import xmrlib.train as train
    from test_train import CFG, _model, _shuffled_loader

    cpu = train.fit(_model(), _shuffled_loader(), None, CFG, tmp_path / "cpu", progress=False,
                    device="cpu")
    calls = []

    def recorded(batches, **kw):
        calls.append(kw)
        return prefetch(batches, **kw)

    monkeypatch.setattr(train, "prefetch", recorded)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    with fake_gpus(monkeypatch) as gpu:
        result = train.fit(_model(), _shuffled_loader(), None, CFG, tmp_path / "gpu",
                           progress=False, device="cuda")
    assert [c["pin_memory"] for c in calls] == [True] * CFG.epochs
    assert "__float__" not in gpu["syncs"] and "item" not in gpu["syncs"]
    assert gpu["syncs"].count("tolist") == 2 * CFG.epochs  # mid-epoch and epoch-end saves
    assert result.history == cpu.history
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_the_process_group_is_destroyed_at_exit(monkeypatch):
    import atexit

    import torch.distributed as dist

    from xmrlib.distributed import init_distributed

    calls, exits, joined = [], [], []
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(joined))
    monkeypatch.setattr(dist, "init_process_group", lambda backend: joined.append(backend))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(atexit, "register", exits.append)
    _torchrun(monkeypatch, local_rank=0)
    assert init_distributed(torch.device("cpu")) == (0, 2) and joined == ["gloo"]
    assert len(exits) == 1
    exits[0]()  # what the interpreter runs at exit
    assert calls == ["destroy"]


# --------------------------------------------------------------------------- memory: defect 5

def test_peak_memory_reads_the_cuda_allocator_on_a_gpu(monkeypatch):
    with fake_gpus(monkeypatch, peak_bytes=3 * 2**20) as gpu:
        with PeakMemory(torch.device("cuda")) as mem:
            pass
    assert mem.mib == 3.0 and mem.kind == "cuda allocator"
    assert ("reset_peak_memory_stats", torch.device("cuda")) in gpu["calls"]
    with PeakMemory("cpu") as mem:  # fresh pages (an anonymous mapping), held for a while
        size = 32 * 2**20
        block = mmap.mmap(-1, size)
        for offset in range(0, size, 4096):
            block[offset] = 1
        time.sleep(0.05)
        block.close()
    assert mem.kind == "host RSS" and mem.mib > 16


# --------------------------------------------------------------------------- the dry run

def test_preflight_checks_every_chapter_on_shapes(tmp_path):
    from xmrlib.preflight import CHAPTERS, markdown, run_checks

    lines = []
    rows = run_checks("smoke", "shapes", device="cpu", steps=2, eval_images=20,
                      log=lines.append)
    assert [r["error"] for r in rows] == [""] * len(rows), [r.get("traceback") for r in rows]
    assert sorted({r["chapter"] for r in rows}) == list(CHAPTERS)
    assert {r["model"] for r in rows} >= {"Kiros VSE", "VSE++", "SCAN t2i LSE", "SCAN i2t LSE",
                                         "MMCA", "A3VSE"}
    for r in rows:
        assert r["train_steps"] == 2 and r["eval_images"] == 20 and r["params"] > 0
        assert r["train_s"] > 0 and r["eval_s"] > 0 and r["memory"] == "host RSS"
    table = markdown(rows)
    assert table.count("| ok |") == len(rows) and "host RSS" in table
    assert len(lines) == len(rows) + 1


def test_preflight_builds_the_data_sets_runs(real_root):
    """On COCO in ``full`` the check builds SCAN i-t with SCAN's COCO values (lambda_lse 20,
    20 epochs at lr 5e-4; Flickr30K's are 5, 30 and 2e-4) and the official vocabulary file
    beside the features, as chapter 04 does; not Shapes' values."""
    from xmrlib.data import load_precomp
    from xmrlib.preflight import chapter_checks
    from xmrlib.runs import run_vocabulary

    root = real_root / "coco_precomp"
    train, dev = load_precomp(root, "train"), load_precomp(root, "dev")
    checks = {c.label: c for c in chapter_checks(["04"], "full", train, dev,
                                                 dataset="coco_precomp")}
    name, config, cfg = checks["SCAN i2t LSE"].build()
    assert name == "scan" and config["attention"] == "i2t" and config["lambda_lse"] == 20.0
    assert (cfg.epochs, cfg.lr) == (20, 5e-4)
    official = run_vocabulary(train, "full", "coco_precomp").to_dict()
    assert config["vocab"] == official != run_vocabulary(train, "full").to_dict()


def test_preflight_on_a_fake_gpu_reports_device_memory(monkeypatch):
    from xmrlib.preflight import run_checks

    with fake_gpus(monkeypatch, peak_bytes=5 * 2**20):
        rows = run_checks("smoke", "shapes", device="cuda", chapters=["03"], steps=1,
                          eval_images=10, log=lambda m: None)
    [row] = rows
    assert row["error"] == "", row.get("traceback")
    assert row["memory"] == "cuda allocator" and row["train_peak_mib"] == 5.0


def test_preflight_reports_a_failing_model_and_goes_on(monkeypatch):
    from xmrlib import preflight

    real = preflight._registry_check

    def broken_vse(chapter, *a):
        check = real(chapter, *a)
        if chapter == "02":
            def build():
                raise RuntimeError("CUDA out of memory")
            check.build = build
        return check

    monkeypatch.setattr(preflight, "_registry_check", broken_vse)
    rows = preflight.run_checks("smoke", "shapes", device="cpu", chapters=["02", "03"],
                                steps=1, eval_images=10, log=lambda m: None)
    assert [r["model"] for r in rows] == ["Kiros VSE", "VSE++"]
    assert "CUDA out of memory" in rows[0]["error"] and rows[1]["error"] == ""
    assert "FAILED" in preflight.markdown(rows)


def test_preflight_refuses_a_missing_gpu_before_reading_data(monkeypatch):
    from xmrlib.preflight import run_checks

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_checks("full", "f30k_precomp", data_root="/nonexistent", device="cuda")


# --------------------------------------------------------------------------- SCAN kernel: defect 6

def _scan_inputs(n_img: int = 7, n_cap: int = 23, padded: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.normalize(torch.randn(n_img, 5, 8, generator=g), dim=-1)
    captions = torch.nn.functional.normalize(torch.randn(n_cap, 6, 8, generator=g), dim=-1)
    if padded:
        return (images, captions, torch.randint(2, 7, (n_cap,), generator=g),
                torch.randint(1, 6, (n_img,), generator=g))
    return images, captions, torch.full((n_cap,), 6), torch.full((n_img,), 5)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("attention", ["t2i", "i2t"])
def test_scan_on_a_gpu_chunks_by_memory_and_never_syncs(monkeypatch, padded, attention):
    from xmrlib.models import scan_kernel as scan

    images, captions, cap_lens, img_lens = _scan_inputs(padded=padded)
    kw = dict(attention=attention, img_lens=img_lens, chunk_size=(2, 3))
    with torch.no_grad():
        ref = scan.xattn_scores(images, captions, cap_lens, **kw)  # CPU chunks of 2 x 3
    calls = []
    real_chunk = scan._chunk_scores

    def spy(img, cap, *a, **k):
        calls.append((img.shape, cap.shape, k["padded"], k["group_elements"]))
        return real_chunk(img, cap, *a, **k)

    monkeypatch.setattr(scan, "_chunk_scores", spy)
    # a budget of 3 image-caption pairs of 5 regions x 6 words
    budget = 3 * scan._TEMPORARIES * 4 * 5 * 6
    monkeypatch.setattr(scan, "GPU_CHUNK_BYTES", budget)
    monkeypatch.setattr(scan, "_GPU_MIN_CAPTIONS", 1)
    with fake_gpus(monkeypatch) as gpu, torch.no_grad():
        img_d, cap_d = images.to("cuda"), captions.to("cuda")
        gpu["syncs"].clear()
        out = scan.xattn_scores(img_d, cap_d, cap_lens, **kw)  # lengths on the host
        assert gpu["syncs"] == [], gpu["syncs"]  # no host synchronisation at all
        assert out.device.type == "cuda"
        got = out.cpu()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert all(g is None for *_, g in calls)  # each chunk scored whole, not in CPU groups
    for (ni, r, _), (nc, length, _), _, _ in calls:  # within the budget (up to the ratio of
        assert ni * nc * r * length * scan._TEMPORARIES * 4 <= 2 * budget  # longest to median)
    if not padded:  # 3 pairs: chunks of 3, 3 and 1 images x 1 caption
        assert sorted({(img[0], cap[0]) for img, cap, _, _ in calls}) == [(1, 1), (3, 1)]
    assert not any(p[0] for *_, p, _ in calls)  # one caption length per chunk: no word masks
    assert any(p[1] for *_, p, _ in calls) == padded  # region masks only where needed


def test_scan_on_the_cpu_keeps_its_groups():
    from xmrlib.models import scan_kernel as scan

    images, captions, cap_lens, img_lens = _scan_inputs()
    seen = []
    real = scan._chunk_scores
    try:
        scan._chunk_scores = lambda *a, **k: seen.append(k["group_elements"]) or real(*a, **k)
        scan.xattn_scores(images, captions, cap_lens, img_lens=img_lens, chunk_size=(4, 4))
    finally:
        scan._chunk_scores = real
    assert seen and set(seen) == {scan.GROUP_ELEMENTS}


def test_preflight_reads_the_protocols_split(tmp_path):
    """An MS-COCO folder holds ``testall`` and need not hold ``test``: the dry run evaluates on
    the split of the data set's protocol, as the chapters do."""
    from xmrlib.data.fixtures import make_fixtures
    from xmrlib.preflight import run_checks

    data_root = make_fixtures(tmp_path, datasets=("coco_precomp",))
    folder = data_root / "coco_precomp"
    for extra in folder.glob("test_*"):
        extra.unlink()
    lines = []
    rows = run_checks("smoke", "coco_precomp", data_root=data_root, device="cpu",
                      chapters=["02"], steps=1, eval_images=5, log=lines.append)
    assert rows and all(r.get("error") in (None, "") for r in rows), rows
    assert "5000 test images" in lines[0], lines[0]

"""benchmarks/bench_scale.py at a tiny scale on CPU: synthetic data, step counts, the report."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROW_KEYS = {"model", "amp", "params", "batch_size", "steps_per_epoch", "steps_timed", "train_s",
            "step_s", "epoch_s", "epoch_extrapolated", "eval_s", "eval_protocol", "rsum",
            "train_peak_mib", "eval_peak_mib"}


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"
    spec = importlib.util.spec_from_file_location("bench_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_split_is_deterministic_per_seed(bench):
    cpu = torch.device("cpu")
    a = bench.synthetic_split("train", 6, 3, 8, seed=0, device=cpu, on_device=True)
    b = bench.synthetic_split("train", 6, 3, 8, seed=0, device=cpu, on_device=True)
    c = bench.synthetic_split("train", 6, 3, 8, seed=1, device=cpu, on_device=True)
    host = bench.synthetic_split("train", 6, 3, 8, seed=0, device=cpu, on_device=False)
    assert a.images.shape == (6, 3, 8) and len(a.captions) == 30
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images) and a.captions != c.captions
    assert torch.equal(torch.from_numpy(host.images), a.images) and host.captions == a.captions
    words = set(bench.made_up_words())
    assert len(words) == 1000
    for caption in a.captions:
        assert 8 <= len(caption.split()) <= 16 and set(caption.split()) <= words


def _gru_params(word_dim, hidden):
    """One direction of a one-layer GRU: 3 gates of input and hidden weights plus two biases."""
    return 3 * hidden * (word_dim + hidden) + 2 * 3 * hidden


@pytest.mark.slow
def test_cut_epoch_rows_steps_and_sizes(bench, tmp_path):
    out = tmp_path / "scale.json"
    returned = bench.main(["--device", "cpu", "--scale", "0.01", "--regions", "4", "--dim", "16",
                           "--max-steps", "2", "--batch-size", "16", "--quiet",
                           "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["rows"] == json.loads(json.dumps(returned["rows"]))
    assert report["device"] == "cpu" and report["torch"] == torch.__version__
    s = report["settings"]
    assert (s["n_train_images"], s["n_test_images"]) == (290, 10)  # 0.01 x 29 000, 0.01 x 1000
    assert (s["n_train_captions"], s["n_test_captions"]) == (5 * 290, 5 * 10)
    rows = report["rows"]
    assert sorted((r["model"], r["amp"]) for r in rows) == [
        ("scan", "bf16"), ("scan", "off"), ("vsepp", "bf16"), ("vsepp", "off")]
    vocab = 4 + 1000  # specials + every made-up word (1450 captions of ~12 draws from 1000)
    embed, words = 1024, 300  # the full profile's sizes
    expected_params = {
        "vsepp": vocab * words + _gru_params(words, embed) + 16 * embed + embed,
        "scan": vocab * words + 2 * _gru_params(words, embed) + 16 * embed + embed}
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["steps_per_epoch"] == 91  # ceil(1450 / 16)
        assert r["steps_timed"] == 2 and r["epoch_extrapolated"] is True
        assert r["epoch_s"] == pytest.approx(r["step_s"] * 91)
        assert r["step_s"] == pytest.approx(r["train_s"] / 2)
        assert r["params"] == expected_params[r["model"]]
        assert r["eval_protocol"] == "1k" and r["eval_s"] > 0 and 0 <= r["rsum"] <= 600


@pytest.mark.slow
def test_whole_epoch_from_host_features(bench):
    report = bench.main(["--device", "cpu", "--scale", "0.001", "--regions", "2", "--dim", "8",
                         "--models", "vsepp", "--amp", "off", "--batch-size", "64",
                         "--max-steps", "10", "--warmup-steps", "0", "--features", "host",
                         "--quiet"])
    s = report["settings"]
    assert (s["n_train_images"], s["n_train_captions"]) == (29, 145)
    assert (s["n_test_images"], s["n_test_captions"]) == (1, 5)
    [row] = report["rows"]
    assert row["steps_per_epoch"] == row["steps_timed"] == 3  # ceil(145 / 64) < max-steps 10
    assert row["epoch_extrapolated"] is False
    assert row["epoch_s"] == pytest.approx(row["train_s"])


def test_cuda_branches_on_a_fake_gpu(bench, monkeypatch):
    """The script as a GPU would run it (features generated and kept on the device, the CUDA
    allocator's peak memory), on a fake GPU (tests/fake_cuda.py): it must not touch a host tensor
    with a device one, and it must report the allocator's figures."""
    from fake_cuda import fake_gpus

    with fake_gpus(monkeypatch, peak_bytes=7 * 2**20) as gpu:
        report = bench.main(["--device", "cuda", "--scale", "0.002", "--regions", "3",
                             "--dim", "8", "--max-steps", "2", "--batch-size", "16",
                             "--quiet"])
    assert report["device_type"] == "cuda" and report["device"].startswith("Fake GPU")
    assert len(report["rows"]) == 4
    for row in report["rows"]:
        assert row["train_peak_mib"] == row["eval_peak_mib"] == 7.0  # the allocator's peak
        assert row["steps_timed"] == 2
    names = [c[0] for c in gpu["calls"]]
    assert "reset_peak_memory_stats" in names and "synchronize" in names

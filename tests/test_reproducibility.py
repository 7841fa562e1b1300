"""Same seed, another CPU: MMCA and its frozen text features give the same bits whatever the
instruction set that PyTorch's and oneDNN's CPU kernels are built for.

Another machine is emulated by subprocesses that cap the kernels: ``ATEN_CPU_CAPABILITY``
(PyTorch's own vectorised kernels: ``avx512``, ``avx2``, ``default``) and ``ONEDNN_MAX_CPU_ISA``
(oneDNN's generated kernels). Before the fix (issue 16), the float32 MiniLM features moved by up
to 4e-6 between AVX2 and AVX-512 kernels and MMCA's training steps (SDPA softmax, oneDNN
``Conv1d``) differed from the second step on; VSE++ and SCAN were already identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PROBE = Path(__file__).with_name("kernel_probe.py")
ROOT = Path(__file__).resolve().parents[1]


def _env(extra: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """The probe on this machine's kernels and under each emulated instruction set (the
    subprocesses run side by side)."""
    tmp = tmp_path_factory.mktemp("kernels")
    settings = {"native": {}, "aten_avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
                "aten_default": {"ATEN_CPU_CAPABILITY": "default"},
                "onednn_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
    procs = {name: subprocess.Popen([sys.executable, str(PROBE), str(tmp / f"{name}.npz")],
                                    env=_env(env), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name, env in settings.items()}
    out = {}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"kernel probe {name} failed:\n{log[-2000:]}"
        with np.load(tmp / f"{name}.npz") as z:
            out[name] = {k: z[k] for k in z.files}
    return out


def test_minilm_features_identical_across_cpu_kernels(probes):
    native = probes["native"]["features"]
    assert native.dtype == np.float32 and native.shape[1] == 384
    for name in ("aten_avx2", "aten_default", "onednn_avx2"):
        diff = np.abs(probes[name]["features"] - native).max()
        assert diff == 0.0, f"MiniLM features under {name} differ by up to {diff:.1e}"


def test_mmca_training_identical_across_cpu_kernels(probes):
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("needs an AVX-512 CPU to emulate an AVX2 one")
    native = probes["native"]
    assert str(native["capability"]) == "AVX512"
    assert str(probes["aten_avx2"]["capability"]) == "AVX2"
    for name in ("aten_avx2", "onednn_avx2"):
        assert np.array_equal(probes[name]["losses"], native["losses"]), name
        assert np.array_equal(probes[name]["weights"], native["weights"]), name

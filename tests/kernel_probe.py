"""Run in a subprocess under CPU-kernel settings (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``)
to emulate another machine; writes what ``tests/test_reproducibility.py`` compares bit for bit.

    python tests/kernel_probe.py OUT.npz

Two independent probes, so that each test fails only for its own cause:

* ``features``: the frozen MiniLM features of a few captions, stored as float32
  (:func:`xmrlib.text_features.build_store`);
* ``mmca``: the losses and final weights of a few MMCA training steps (hardest negatives,
  dropout on) on random region features and random word features (a registered store), so
  that only MMCA's own kernels are exercised.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

CAPTIONS = ["a red circle left of a blue square", "two shapes on a grey background",
            "a small green star above a large purple diamond", "an orange triangle",
            "a large yellow star below a red circle on a black background"]


def probe_features() -> np.ndarray:
    from xmrlib import text_features as tf

    return tf.build_store(CAPTIONS, dtype="float32", device="cpu").features


def probe_mmca(steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    from xmrlib import text_features as tf
    from xmrlib.models.mmca import MMCA

    g = torch.Generator().manual_seed(0)
    tokens, lengths = tf.wordpiece_tokenize(CAPTIONS)
    ids = np.concatenate([tokens[i, :n].numpy() for i, n in enumerate(lengths.tolist())])
    offsets = np.concatenate([[0], np.cumsum(lengths.numpy())])
    feats = torch.randn(len(ids), tf.MINILM_DIM, generator=g).numpy()
    tf.register_store(tf.TokenFeatureStore(ids.astype(np.int32), offsets, feats))
    n = len(CAPTIONS)
    batch = {"images": torch.rand(n, 6, 20, generator=g), "n_regions": torch.tensor([6, 4, 3, 5, 2]),
             "tokens": tokens, "lengths": lengths}
    torch.manual_seed(0)
    model = MMCA(img_dim=20, embed_size=16, heads=4, alpha=0.5, max_violation=True).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    return np.asarray(losses), weights


def main(out: str) -> None:
    torch.set_num_threads(1)
    losses, weights = probe_mmca()
    np.savez(out, features=probe_features(), losses=losses, weights=weights,
             capability=torch.backends.cpu.get_cpu_capability())


if __name__ == "__main__":
    main(sys.argv[1])

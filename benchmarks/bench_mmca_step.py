"""Speed of one MMCA training step at chapter 05's default sizes (batch 16, d = 32, 4 heads:
256 image-caption pairs through the cross-attention unit, forward and backward), with the
attention softmax's gradient written out (``stable_softmax``, the library) or recorded by
autograd through the shift, exp, sum and division (``--softmax autograd``, the previous code).

    OMP_NUM_THREADS=1 python benchmarks/bench_mmca_step.py [--softmax function|autograd]

Sequence lengths are those of the default Shapes set: up to 8 regions, up to 22 WordPiece tokens.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from xmrlib.models import mmca


def autograd_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The attention weights with autograd recording every op of the softmax."""
    logits = (q / math.sqrt(q.shape[-1])) @ k.transpose(-1, -2)
    logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
    e = (logits - logits.amax(-1, keepdim=True).detach()).exp()
    return e / e.sum(-1, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--softmax", choices=("function", "autograd"), default="function")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    if args.softmax == "autograd":
        mmca.TransformerUnit._weights = staticmethod(autograd_weights)
    torch.manual_seed(0)
    batch, regions, words = 16, 8, 22
    model = mmca.MMCA(img_dim=128, embed_size=32, heads=4, alpha=0.2, max_violation=False)
    img = torch.randn(batch, 1 + regions, 32, requires_grad=True)  # (B, 1 + R, d)
    cap = torch.randn(batch, 1 + words, 32, requires_grad=True)  # (B, 1 + L, d)
    img_lens = torch.randint(3, regions + 1, (batch,))
    cap_lens = torch.randint(10, words + 1, (batch,))

    def step() -> None:
        model.similarity(img, cap, cap_lens, img_lens).sum().backward()  # (B, B) scores

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(f"{args.softmax}: {1000 * (time.perf_counter() - t0) / args.steps:.1f} ms per step")


if __name__ == "__main__":
    main()

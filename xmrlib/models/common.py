"""Building blocks shared by every model of the book: normalisation, masks, pooling and encoders.

The encoders follow the official VSE++ (``fartashf/vsepp``, ``model.py``) and SCAN
(``kuanghuei/SCAN``, ``model.py``) code in spirit: a linear layer over precomputed image features
with Xavier-uniform initialisation, and a word-embedding + recurrent sentence encoder over packed
(padding-free) sequences.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def autocast_off(x: Tensor) -> AbstractContextManager:
    """A context that runs its body in full precision: autocast off on ``x``'s device type.

    Under ``torch.autocast`` a matrix product is recast to bfloat16 even when its inputs were
    cast to float32 just before, so ``a.float() @ b.float()`` alone does not give float32
    scores. Scores and losses are computed inside this context on float32 inputs: bfloat16 has
    8 bits of mantissa (steps of about 0.004 near 1), too coarse for a hinge margin or for
    choosing the hardest negative. Without autocast on that device it does nothing.
    """
    kind = x.device.type
    if torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind):
        return torch.autocast(kind, enabled=False)
    return nullcontext()


def full_precision(x: Tensor) -> Tensor:
    """``x`` in at least float32: bfloat16/float16 are promoted, float32 and float64 kept.

    The casts of scores and losses to full precision (see :func:`autocast_off`) must not lower
    a float64 model (the fidelity tests compare float64 training steps with the official code).
    """
    return x.to(torch.promote_types(x.dtype, torch.float32))


def l2norm(x: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """Divide ``x`` by its L2 norm along ``dim`` (``eps`` keeps zero rows at zero)."""
    return x / (x.norm(dim=dim, keepdim=True) + eps)


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Boolean mask (n, max_len): True where position < length."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def masked_mean(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean of x (n, T, d) over the first ``lengths[i]`` steps of each row -> (n, d)."""
    if lengths is None:
        return x.mean(dim=1)
    mask = length_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)  # (n, T, 1)
    return (x * mask).sum(dim=1) / lengths.clamp(min=1).unsqueeze(-1).to(x.dtype)


def xavier_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A linear layer with Xavier-uniform weights and zero bias (as vsepp/SCAN initialise fc)."""
    fc = nn.Linear(in_dim, out_dim)
    bound = math.sqrt(6.0) / math.sqrt(in_dim + out_dim)
    nn.init.uniform_(fc.weight, -bound, bound)
    nn.init.zeros_(fc.bias)
    return fc


class RegionProjection(nn.Module):
    """Project every region feature (n, R, D) -> (n, R, e), optionally l2-normalised per region."""

    def __init__(self, img_dim: int, embed_size: int, normalize: bool = True) -> None:
        super().__init__()
        self.fc = xavier_linear(img_dim, embed_size)
        self.normalize = normalize

    def forward(self, images: Tensor) -> Tensor:
        out = self.fc(images)
        return l2norm(out) if self.normalize else out


class GlobalImageEncoder(nn.Module):
    """Mean-pool the valid regions, then project: (n, R, D) or (n, D) -> (n, e)."""

    def __init__(self, img_dim: int, embed_size: int, normalize: bool = True) -> None:
        super().__init__()
        self.fc = xavier_linear(img_dim, embed_size)
        self.normalize = normalize

    def forward(self, images: Tensor, n_regions: Tensor | None = None) -> Tensor:
        pooled = images if images.dim() == 2 else masked_mean(images, n_regions)  # (n, D)
        out = self.fc(pooled)
        return l2norm(out) if self.normalize else out


class RNNTextEncoder(nn.Module):
    """Word embeddings + GRU/LSTM over packed sequences, in the weights' dtype (never autocast).

    The recurrence runs outside autocast (:func:`autocast_off`), in the dtype of the RNN's
    weights (float32; float64 when a test converts the model with ``.double()``): under a bfloat16
    autocast, torch's cuDNN RNN wrapper (``_cudnn_rnn`` in ATen's ``cudnn/AutocastRNN.cpp``)
    casts the input, the hidden state and the weights to *float16* whatever dtype autocast was
    given, and no gradient scaler guards float16 gradients in this training loop; CPU autocast
    casts an LSTM over a padded tensor to bfloat16. The GRU/LSTM is a small part of a step.

    ``forward`` returns ``(words, sentence)``: per-word states (n, L, e) (bidirectional states are
    averaged, as SCAN does) with zeros at padding, and the state at each caption's last valid
    word (n, e) (for a bidirectional RNN, the average of both directions' final states).
    """

    def __init__(self, vocab_size: int, word_dim: int, embed_size: int, rnn: str = "gru",
                 num_layers: int = 1, bidirectional: bool = False) -> None:
        super().__init__()
        if rnn not in ("gru", "lstm"):
            raise ValueError(f"rnn must be 'gru' or 'lstm', got {rnn!r}")
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        cell = nn.GRU if rnn == "gru" else nn.LSTM
        self.rnn = cell(word_dim, embed_size, num_layers, batch_first=True,
                        bidirectional=bidirectional)
        self.bidirectional = bidirectional

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = self.embed(tokens)  # (n, L, word_dim)
        x = x.to(self.rnn.weight_ih_l0.dtype)  # the RNN's dtype, whatever autocast would pick
        packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True,
                                      enforce_sorted=False)
        with autocast_off(x):
            out, hidden = self.rnn(packed)
        words, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        h = hidden[0] if isinstance(hidden, tuple) else hidden  # (layers * dirs, n, e)
        if self.bidirectional:
            e = words.shape[-1] // 2
            words = (words[..., :e] + words[..., e:]) / 2  # (n, L, 2e) -> (n, L, e)
            sentence = (h[-2] + h[-1]) / 2
        else:
            sentence = h[-1]
        return words, sentence

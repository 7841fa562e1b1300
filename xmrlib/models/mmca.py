"""MMCA: Multi-Modality Cross Attention (Wei, Zhang, Li, Zhang, Wu, CVPR 2020).

The paper (no public code) is the specification. Two modules:

* **self-attention module** (intra-modality). Image: region features -> fully connected layer
  ``R`` -> a Transformer unit over the regions -> average pool -> l2 -> ``i0`` (Eq. 5).
  Text: WordPiece tokens -> frozen BERT-family encoder ``E`` -> 1-D convolutions over uni-, bi-
  and tri-grams (Eq. 6) -> max pool over words -> fully connected -> normalise -> ``c0`` (Eq. 7).
* **cross-attention module** (inter- and intra-modality). One Transformer unit over the stacked
  sequence ``Y = (R; E)`` of one image and one caption (Eqs. 8-14); its output is split back into
  regions (average pool -> ``i1``) and words (1-D CNN + max pool -> ``c1``).

Similarity ``S(I, T) = i0 . c0 + alpha * (i1 . c1)``; bidirectional hinge loss with the hardest
negatives of the batch (Eq. 15, as VSE++).

Where the paper is silent or inconsistent, the choices below are parameters (the chapter lists
them): ``word_proj`` (BERT's 384/768-d outputs are projected by a linear layer into ``d`` before
they join the regions in ``Y``); padding masks in every attention (padded regions/words get no
weight and do not change any output); ``sentence_norm`` (Eq. 7 writes LayerNorm, the text says
l2 and Sec. 3.5 needs unit norms: default ``"l2"``); ``ffn_dim`` (Eq. 4 gives W1, W2 square, so
``d`` by default, not 4d); ``heads`` (16 in the paper); ``dropout`` (0.1, unstated); post-norm
residual units as Fig. 3; average pooling over valid regions only; a separate CNN for ``c1``;
``[CLS]``/``[SEP]`` kept as words (``drop_special_tokens``); no modality (segment) embedding in
``Y``. :data:`DESIGN_CHOICES` lists them all.

Embeddings (model contract): ``encode_images`` returns (n, 1 + R, d) with ``[:, 0] = i0`` and
``[:, 1:]`` the projected regions ``R`` (zero at padded regions); ``encode_captions`` returns
(n, 1 + L, d) with ``[:, 0] = c0`` and ``[:, 1:]`` the projected word features (zero at padding).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmrlib.models.common import (autocast_off, full_precision, l2norm, length_mask, masked_mean,
                                  xavier_linear)
from xmrlib.text_features import (MINILM_DIM, frozen_features, load_minilm, minilm_features,
                                  wordpiece_tokenize)

#: Where the paper is silent or inconsistent: (topic, what the paper says, our choice, parameter).
DESIGN_CHOICES: tuple[tuple[str, str, str, str], ...] = (
    ("text encoder", "BERT-base (12 layers, 768-d), weights fixed (Sec. 4.2)",
     "packaged MiniLM (6 layers, 384-d), frozen; its outputs cached on disk", "text_encoder"),
    ("BERT outputs in the joint sequence Y", "Y = (R; E) with R d-dim and E 768-dim (Sec. 3.4)",
     "a linear layer projects E into d before stacking", "(always on)"),
    ("padding", "not discussed", "masks in every attention and pooling; padded regions/words "
     "change no output", "(always on)"),
    ("normalisation of c0", "Eq. 7 writes LayerNorm, the text says l2, Sec. 3.5 needs unit norms",
     "l2 (LayerNorm then l2 as an option)", "sentence_norm"),
    ("normalisation of regions before the Transformer", "not stated", "none (linear layer only)",
     "(always on)"),
    ("FFN width", "Eq. 4: W1, W2 are d x d", "d (not the usual 4d)", "ffn_dim"),
    ("heads", "16 in both Transformer units", "16 in the full profile; fewer for small d",
     "heads"),
    ("dropout", "not stated", "0.1 on both sub-layer outputs (Vaswani et al.'s residual "
     "dropout), none on attention weights", "dropout"),
    ("residual + LayerNorm order", "Fig. 3: residual connection followed by LayerNorm",
     "post-norm", "(always on)"),
    ("number of Transformer layers", "one 'Transformer unit' per module", "one layer each",
     "(always on)"),
    ("pooling", "average over regions (Eq. 5), max over word positions (Eq. 6)",
     "average over valid regions only; max over valid word positions, windows past the last "
     "word see zeros", "(always on)"),
    ("CNN filters", "256 per window size; Eq. 7 has W_e of size d x 3d", "d filters per size",
     "n_filters"),
    ("CNN of c1", "'quite similar to' the self-attention module's", "a separate CNN of the same "
     "shape (its input is d-dim, c0's is BERT's width)", "(always on)"),
    ("[CLS] and [SEP]", "WordPiece tokens are the fragments", "kept as words",
     "drop_special_tokens"),
    ("modality (segment) embedding in Y", "not mentioned", "none", "(always on)"),
    ("maximum caption length", "not stated", "64 WordPiece tokens", "max_len"),
    ("negatives of the hinge loss", "the hardest of the batch (Eq. 15), no warm-up mentioned",
     "hardest in the full profile; the sum over all negatives in the short CPU profiles",
     "max_violation"),
    ("evaluation of the cross term", "not discussed", "exact over all pairs, chunked; two-stage "
     "re-scoring of a top-k by i0 . c0 as a labelled option", "pair_chunk, two_stage_similarity"),
)

TEXT_ENCODERS = ("frozen", "finetune")
TERMS = ("both", "self", "cross")
SENTENCE_NORMS = ("l2", "layernorm_l2")


def stable_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax written out (max shift, exp, sum, divide): the same bits on every x86 CPU.

    ``torch.softmax`` and ``F.scaled_dot_product_attention`` run CPU kernels vectorised for the
    machine's instruction set (``torch.backends.cpu.get_cpu_capability()``), so an AVX2 and an
    AVX-512 machine get different last bits, which training amplifies (CONTRIBUTING.md,
    "Reproducibility"); the elementwise ops, ``amax`` and ``sum`` used here do not depend on it.
    Under autograd the gradient is written out too (:class:`_StableSoftmax`).
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _StableSoftmax.apply(x, dim)
    return _softmax_values(x, dim)


def _softmax_values(x: Tensor, dim: int) -> Tensor:
    """The forward values of :func:`stable_softmax` (no autograd), in one new buffer."""
    shift = x.amax(dim, keepdim=True)
    e = x.sub(shift).exp_()
    return e.div_(e.sum(dim, keepdim=True))


class _StableSoftmax(torch.autograd.Function):
    """:func:`stable_softmax` with the softmax's own gradient, ``y * (g - sum(g * y))``, in three
    elementwise passes instead of autograd's record of the shift, exp, sum and division (the
    attention's largest cost in a training step)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, dim: int) -> Tensor:
        y = _softmax_values(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(ctx.dim, keepdim=True)), None


def ngram_conv(words: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv`` over words (n, L, in), zero-padded on the right so that every position starts a
    window -> (n, L, out). One matrix product over the unfolded windows: the same numbers as
    ``nn.Conv1d`` to rounding, but the same bits on every x86 CPU (``Conv1d`` runs oneDNN
    kernels generated for the machine's instruction set)."""
    n, length, channels = words.shape
    size = conv.kernel_size[0]
    padded = F.pad(words, (0, 0, 0, size - 1))  # (n, L + size - 1, in)
    windows = padded.unfold(1, size, 1).reshape(n, length, channels * size)  # (n, L, in*size)
    return windows @ conv.weight.reshape(conv.out_channels, -1).t() + conv.bias  # (n, L, out)


class TransformerUnit(nn.Module):
    """One Transformer unit (MMCA Fig. 3): multi-head attention and a position-wise FFN, each
    followed by a residual connection and LayerNorm (post-norm, as Vaswani et al.).

    ``mask`` (n, T) is True at valid positions; padded positions are never attended to and
    their outputs are set to zero. Dropout acts on the outputs of both sub-layers before the
    residual sum ("residual dropout" of Vaswani et al., Sec. 5.4), not on attention weights.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_size {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def attention_weights(self, x: Tensor, mask: Tensor) -> Tensor:
        """Softmax attention weights (n, heads, T, T) of Eq. 1 (rows of padded queries too)."""
        q, k, _ = self._qkv(x)
        return self._weights(q, k, mask)

    @staticmethod
    def _weights(q: Tensor, k: Tensor, mask: Tensor) -> Tensor:
        logits = (q / math.sqrt(q.shape[-1])) @ k.transpose(-1, -2)  # (n, h, T, T)
        logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        return stable_softmax(logits)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, t, d = x.shape
        qkv = self.qkv(x).view(n, t, 3, self.heads, d // self.heads)  # (n, T, 3, h, d/h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (n, h, T, d/h)
        return q, k, v

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self._qkv(x)
        # written out, not F.scaled_dot_product_attention: the same bits on every CPU
        attn = self._weights(q, k, mask) @ v  # (n, h, T, d/h)
        attn = attn.transpose(1, 2).reshape(n, t, d)  # (n, h, T, d/h) -> (n, T, d)
        x = self.norm1(x + self.drop(self.out(attn)))
        x = self.norm2(x + self.drop(self.ffn(x)))
        return x * mask.unsqueeze(-1).to(x.dtype)


class NgramCNN(nn.Module):
    """Uni-, bi- and tri-gram 1-D convolutions + ReLU (Eq. 6), max pool over the valid words,
    concatenation, a fully connected layer and normalisation (Eq. 7): (n, L, in) -> (n, d).

    Windows that run past the last word see zeros (right padding), so position k covers words
    k..k+l-1 for every k < length, as Eq. 6; positions at or beyond the length are excluded from
    the max, so batch padding never changes the result.
    """

    def __init__(self, in_dim: int, n_filters: int, out_dim: int, norm: str = "l2") -> None:
        super().__init__()
        if norm not in SENTENCE_NORMS:
            raise ValueError(f"sentence_norm must be one of {SENTENCE_NORMS}, got {norm!r}")
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, n_filters, size) for size in (1, 2, 3))
        self.fc = xavier_linear(3 * n_filters, out_dim)
        self.norm = nn.LayerNorm(out_dim) if norm == "layernorm_l2" else None

    def forward(self, words: Tensor, lengths: Tensor) -> Tensor:
        mask = length_mask(lengths, words.shape[1])  # (n, L)
        x = words * mask.unsqueeze(-1).to(words.dtype)  # (n, L, in)
        pooled = []
        for conv in self.convs:
            p = F.relu(ngram_conv(x, conv))  # (n, L, filters)
            p = p.masked_fill(~mask[:, :, None], float("-inf"))
            pooled.append(p.max(dim=1).values)
        out = self.fc(torch.cat(pooled, dim=1))  # (n, 3 * filters) -> (n, d)
        if self.norm is not None:
            out = self.norm(out)
        return l2norm(out)


class MMCA(nn.Module):
    """Multi-Modality Cross Attention network (Wei et al., CVPR 2020). See the module docstring.

    ``terms`` selects the similarity for ablations: ``"both"`` (the paper), ``"self"`` (``i0 . c0``
    only, i.e. alpha = 0) or ``"cross"`` (``i1 . c1`` only). ``region_self_attention=False``
    removes the image Transformer unit (``i0`` = mean of the projected regions).
    ``text_encoder="frozen"`` keeps MiniLM fixed (the paper's setting) and outside the state
    dict; cached features (:func:`xmrlib.text_features.register_store`) replace it where they
    hold the tokens.
    """

    name = "mmca"

    def __init__(self, img_dim: int, embed_size: int = 256, heads: int = 16,
                 ffn_dim: int | None = None, n_filters: int | None = None, dropout: float = 0.1,
                 alpha: float = 0.2, margin: float = 0.2, max_violation: bool = True,
                 terms: str = "both", region_self_attention: bool = True,
                 text_encoder: str = "frozen", max_len: int = 64, sentence_norm: str = "l2",
                 drop_special_tokens: bool = False,
                 pair_chunk: int = 2048) -> None:
        super().__init__()
        if text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got {text_encoder!r}")
        if terms not in TERMS:
            raise ValueError(f"terms must be one of {TERMS}, got {terms!r}")
        self.config: dict[str, Any] = {k: v for k, v in locals().items()
                                       if k not in ("self", "__class__")}
        ffn_dim = ffn_dim or embed_size
        n_filters = n_filters or embed_size
        self.alpha, self.margin, self.max_violation = alpha, margin, max_violation
        self.terms, self.max_len, self.pair_chunk = terms, max_len, pair_chunk
        self.drop_special = drop_special_tokens
        self.region_fc = xavier_linear(img_dim, embed_size)
        self.region_unit = (TransformerUnit(embed_size, heads, ffn_dim, dropout)
                            if region_self_attention else None)
        self.text_cnn = NgramCNN(MINILM_DIM, n_filters, embed_size, sentence_norm)
        self.word_proj = xavier_linear(MINILM_DIM, embed_size)
        self.cross_unit = TransformerUnit(embed_size, heads, ffn_dim, dropout)
        self.cross_cnn = NgramCNN(embed_size, n_filters, embed_size, sentence_norm)
        self.bert = load_minilm() if text_encoder == "finetune" else None

    # ------------------------------------------------------------------ text features
    def tokenize(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """MiniLM WordPiece ids (n, L) padded with 0 and lengths (n,) (incl. [CLS], [SEP])."""
        return wordpiece_tokenize(captions, self.max_len)

    def word_features(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """BERT-family outputs E (n, L, 384), zero at padding: trained in the forward pass
        (``finetune``) or frozen, read from the registered feature caches where they hold the
        tokens (:func:`xmrlib.text_features.register_store`) and encoded live elsewhere."""
        if self.bert is not None:
            return minilm_features(self.bert, tokens, lengths)
        return frozen_features(tokens, lengths)

    def word_lengths(self, lengths: Tensor) -> Tensor:
        """Words per caption in the embeddings (token lengths, minus 2 without specials)."""
        return (lengths - 2).clamp(min=1) if self.drop_special else lengths

    # ------------------------------------------------------------------ encoders
    def encode_images(self, images: Tensor, n_regions: Tensor | None = None) -> Tensor:
        """(n, R, D) region features -> (n, 1 + R, d): ``[:, 0] = i0``, ``[:, 1:]`` = R."""
        n, r, _ = images.shape
        if n_regions is None:
            n_regions = torch.full((n,), r, dtype=torch.long, device=images.device)
        mask = length_mask(n_regions, r)  # (n, R)
        regions = self.region_fc(images) * mask.unsqueeze(-1).to(images.dtype)
        attended = self.region_unit(regions, mask) if self.region_unit is not None else regions
        i0 = l2norm(masked_mean(attended, n_regions))
        return torch.cat([i0.unsqueeze(1), regions], dim=1)

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(n, L) WordPiece ids -> (n, 1 + L', d): ``[:, 0] = c0``, ``[:, 1:]`` = projected E."""
        words = self.word_features(tokens, lengths)  # (n, L, 384)
        if self.drop_special:
            words = words[:, 1:]  # drop [CLS]; [SEP] falls beyond the shortened length
        n_words = self.word_lengths(lengths)
        words = words * length_mask(n_words, words.shape[1]).unsqueeze(-1).to(words.dtype)
        c0 = self.text_cnn(words, n_words)
        proj = self.word_proj(words) * length_mask(n_words, words.shape[1]).unsqueeze(-1).to(
            words.dtype)
        return torch.cat([c0.unsqueeze(1), proj], dim=1)

    # ------------------------------------------------------------------ similarity
    def cross_embeddings(self, img_emb: Tensor, cap_emb: Tensor, img_lens: Tensor,
                         n_words: Tensor) -> tuple[Tensor, Tensor]:
        """``(i1, c1)`` (P, d) each for P aligned pairs: row p couples image p and caption p."""
        r = int(img_lens.max())
        w = int(n_words.max())
        regions, words = img_emb[:, 1:1 + r], cap_emb[:, 1:1 + w]  # trim padding of the chunk
        y = torch.cat([regions, words], dim=1)  # (P, r + w, d) = Y of Eq. 8-10
        mask = torch.cat([length_mask(img_lens, r), length_mask(n_words, w)], dim=1)
        yc = self.cross_unit(y, mask)
        i1 = l2norm(masked_mean(yc[:, :r], img_lens))
        c1 = self.cross_cnn(yc[:, r:], n_words)
        return i1, c1

    def _region_lengths(self, img_emb: Tensor, img_lens: Tensor | None) -> Tensor:
        if img_lens is not None:
            return img_lens.to(img_emb.device)
        return (img_emb[:, 1:].abs().sum(-1) > 0).sum(1).clamp(min=1)  # padded regions are zero

    def pair_scores(self, img_emb: Tensor, cap_emb: Tensor, img_idx: Tensor, cap_idx: Tensor,
                    cap_lens: Tensor, img_lens: Tensor | None = None) -> Tensor:
        """Full S of the pairs (img_idx[p], cap_idx[p]) -> (P,), in chunks of ``pair_chunk``."""
        img_lens = self._region_lengths(img_emb, img_lens)
        n_words = self.word_lengths(cap_lens.to(cap_emb.device))
        out = []
        for s in range(0, len(img_idx), self.pair_chunk):
            ii, cc = img_idx[s:s + self.pair_chunk], cap_idx[s:s + self.pair_chunk]
            out.append(self._score_aligned(img_emb[ii], cap_emb[cc], img_lens[ii], n_words[cc]))
        return torch.cat(out) if out else img_emb.new_zeros(0)

    def _score_aligned(self, img: Tensor, cap: Tensor, img_lens: Tensor, n_words: Tensor) -> Tensor:
        """S of aligned pairs (P,): the cross unit may run under autocast, the dot products of
        the embeddings run in float32 outside it."""
        cross = self.terms == "cross" or (self.terms == "both" and self.alpha != 0)
        i1, c1 = self.cross_embeddings(img, cap, img_lens, n_words) if cross else (None, None)
        with autocast_off(img):
            if self.terms == "cross":
                return (full_precision(i1) * full_precision(c1)).sum(-1)
            score = (full_precision(img[:, 0]) * full_precision(cap[:, 0])).sum(-1)
            if cross:
                score = score + self.alpha * (full_precision(i1) * full_precision(c1)).sum(-1)
        return score

    def similarity(self, img_emb: Tensor, cap_emb: Tensor, cap_lens: Tensor | None = None,
                   img_lens: Tensor | None = None) -> Tensor:
        """Exact S for every image-caption pair -> (n_img, n_cap).

        Up to ``pair_chunk`` pairs (a training batch) go through the cross unit at once, in
        order; more (an evaluation) go in tiles of about ``pair_chunk`` pairs over the images
        sorted by region count and the captions sorted by length, so that each tile pads its
        sequences only to its own longest (Shapes' test captions: 10-23 tokens; a tile of
        2 images x 1000 captions always padded to 23). Padding changes no score.
        """
        n_img, n_cap = img_emb.shape[0], cap_emb.shape[0]
        if self.terms == "self" or (self.alpha == 0 and self.terms == "both"):
            with autocast_off(img_emb):
                return full_precision(img_emb[:, 0]) @ full_precision(cap_emb[:, 0]).T
        if cap_lens is None:
            raise ValueError("MMCA.similarity needs cap_lens for the cross-attention term")
        if n_img * n_cap <= self.pair_chunk:
            img_idx = torch.arange(n_img, device=img_emb.device).repeat_interleave(n_cap)
            cap_idx = torch.arange(n_cap, device=img_emb.device).repeat(n_img)
            return self.pair_scores(img_emb, cap_emb, img_idx, cap_idx, cap_lens,
                                    img_lens).view(n_img, n_cap)
        img_lens = self._region_lengths(img_emb, img_lens)
        n_words = self.word_lengths(cap_lens.to(cap_emb.device))
        images, captions = torch.argsort(img_lens, stable=True), torch.argsort(n_words, stable=True)
        tile_img = max(1, math.isqrt(self.pair_chunk // 2))  # 32 x 64 pairs for 2048
        tile_cap = max(1, self.pair_chunk // tile_img)
        out = torch.empty(n_img, n_cap, device=img_emb.device)
        for a in range(0, n_img, tile_img):
            ii = images[a:a + tile_img]
            for b in range(0, n_cap, tile_cap):
                cc = captions[b:b + tile_cap]
                i_idx, c_idx = ii.repeat_interleave(len(cc)), cc.repeat(len(ii))
                scores = self._score_aligned(img_emb[i_idx], cap_emb[c_idx], img_lens[i_idx],
                                             n_words[c_idx])  # (len(ii) * len(cc),)
                out[ii[:, None], cc[None, :]] = scores.view(len(ii), len(cc))
        return out

    # ------------------------------------------------------------------ training
    def loss(self, batch: dict, progress: float = 0.0) -> tuple[Tensor, dict[str, float]]:
        """Hinge triplet loss with hardest negatives (Eq. 15) over all B x B pairs of the batch."""
        from xmrlib.losses import hinge_triplet_loss

        device = self.region_fc.weight.device
        img = self.encode_images(batch["images"].to(device), batch["n_regions"].to(device))
        cap = self.encode_captions(batch["tokens"].to(device), batch["lengths"].to(device))
        scores = self.similarity(img, cap, batch["lengths"].to(device),
                                 batch["n_regions"].to(device))  # (B, B)
        with autocast_off(scores):
            loss = hinge_triplet_loss(scores, margin=self.margin,
                                      max_violation=self.max_violation)
        return loss, {"loss": float(loss.detach()),
                      "pos_score": float(scores.detach().diagonal().mean())}

    # ------------------------------------------------------------------ attention maps
    @torch.no_grad()
    def region_attention(self, images: Tensor, n_regions: Tensor) -> Tensor:
        """Head-averaged region self-attention (n, R, R) of the image Transformer unit."""
        if self.region_unit is None:
            raise ValueError("this MMCA has no region self-attention (region_self_attention=False)")
        mask = length_mask(n_regions, images.shape[1])
        regions = self.region_fc(images) * mask.unsqueeze(-1).to(images.dtype)
        return self.region_unit.attention_weights(regions, mask).mean(dim=1)

    @torch.no_grad()
    def cross_attention(self, images: Tensor, n_regions: Tensor, tokens: Tensor,
                        lengths: Tensor) -> Tensor:
        """Head-averaged attention (n, r + w, r + w) over Y = (regions; words) of aligned pairs.

        Rows and columns are the ``r = max(n_regions)`` regions then the ``w`` words; the
        word-to-region block ``[r:, :r]`` is the inter-modality part.
        """
        img = self.encode_images(images, n_regions)
        cap = self.encode_captions(tokens, lengths)
        n_words = self.word_lengths(lengths)
        r, w = int(n_regions.max()), int(n_words.max())
        y = torch.cat([img[:, 1:1 + r], cap[:, 1:1 + w]], dim=1)
        mask = torch.cat([length_mask(n_regions, r), length_mask(n_words, w)], dim=1)
        return self.cross_unit.attention_weights(y, mask).mean(dim=1)


@torch.no_grad()
def two_stage_similarity(model: MMCA, img_emb: Tensor, cap_emb: Tensor, cap_lens: Tensor,
                         img_lens: Tensor | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-stage MMCA scores: rank by ``i0 . c0``, re-score each query's top-k with the full S.

    Returns ``(i2t, t2i)`` score matrices (n_img, n_cap): in ``i2t`` every image's k best captions
    by ``i0 . c0`` carry their full S and sit above the rest (still in ``i0 . c0`` order); ``t2i``
    does the same per caption over images. Feed ``i2t`` to the i2t metrics and ``t2i`` to the t2i
    metrics of :func:`xmrlib.evaluation.recall_metrics`. With k >= the gallery size both equal
    the exact ranking. Every shortlisted pair is scored once, batched.
    """
    from xmrlib.rerank import rerank_matrix

    img_emb, cap_emb = img_emb.detach(), cap_emb.detach()
    coarse = img_emb[:, 0] @ cap_emb[:, 0].T  # (n_img, n_cap)
    k_cap, k_img = min(k, coarse.shape[1]), min(k, coarse.shape[0])
    cap_cand = coarse.topk(k_cap, dim=1).indices  # (n_img, k)
    img_cand = coarse.topk(k_img, dim=0).indices.T  # (n_cap, k)
    rows = torch.arange(coarse.shape[0], device=coarse.device).repeat_interleave(k_cap)
    cols = torch.arange(coarse.shape[1], device=coarse.device).repeat_interleave(k_img)
    pairs = torch.cat([torch.stack([rows, cap_cand.reshape(-1)]),
                       torch.stack([img_cand.reshape(-1), cols])],
                      dim=1).unique(dim=1)  # (2, P) distinct shortlisted (image, caption) pairs
    fine = torch.full_like(coarse, float("nan"))
    fine[pairs[0], pairs[1]] = model.pair_scores(img_emb, cap_emb, pairs[0], pairs[1], cap_lens,
                                                 img_lens)
    fine_np, coarse_np = fine.cpu().numpy(), coarse.cpu().numpy()
    i2t = rerank_matrix(coarse_np, cap_cand.cpu().numpy(), lambda q, c: fine_np[q, c])
    t2i = rerank_matrix(coarse_np.T, img_cand.cpu().numpy(), lambda q, c: fine_np[c, q]).T
    return i2t, t2i

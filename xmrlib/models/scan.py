"""SCAN models: stacked cross attention between regions and words (Lee et al., ECCV 2018).

:class:`SCAN` (one direction of attention and one aggregation), :class:`SumMax` (the paper's
attention-free baseline, Table 3) and :class:`SCANEnsemble` (two members averaged, Tables 1-2)
score with the exact chunked kernel of :mod:`xmrlib.models.scan_kernel`, whose docstring gives
the equations (image-text, Eqs. 1-5; text-image, Eqs. 6-8) and the details where the official
code (``kuanghuei/SCAN``) departs from them;
:func:`word_attention` returns the attention weights the kernel uses, for plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xmrlib.losses import hinge_triplet_loss
from xmrlib.models.common import (RNNTextEncoder, RegionProjection, autocast_off, full_precision,
                                  l2norm)
from xmrlib.models.scan_kernel import (  # xattn_scores: also the public path from here
    AGGREGATIONS, ATTENTIONS, ArrayLike, raw_norm, summax_scores, xattn_pair_scores,
    xattn_scores)


class SCAN(nn.Module):
    """SCAN (Lee et al. 2018): projected regions and bi-GRU words scored by stacked cross
    attention, trained with the hinge loss on the hardest negatives (max violation).

    Defaults are the paper's: embedding 1024, word vectors 300, margin 0.2, t2i LSE with
    lambda_softmax 9 and lambda_lse 6, ``clipped_l2norm``, bidirectional GRU, hardest negatives
    from the first step. ``warmup`` (not in the paper) is the fraction of training that uses the
    sum over all negatives before the hardest ones, as for VSE++ (:class:`xmrlib.models.vse.VSE`).
    """

    name = "scan"

    def __init__(self, vocab: dict, img_dim: int, embed_size: int = 1024, word_dim: int = 300,
                 margin: float = 0.2, attention: str = "t2i", agg: str = "LSE",
                 lambda_softmax: float = 9.0, lambda_lse: float = 6.0,
                 raw_feature_norm: str = "clipped_l2norm", max_violation: bool = True,
                 num_layers: int = 1, bi_gru: bool = True,
                 chunk_size: int | tuple[int, int] = (64, 64), warmup: float = 0.0) -> None:
        super().__init__()
        from xmrlib.vocab import Vocabulary

        if attention not in ATTENTIONS or agg not in AGGREGATIONS:
            raise ValueError(f"SCAN: attention must be in {ATTENTIONS} and agg in "
                             f"{AGGREGATIONS}, got {attention!r}, {agg!r}")
        if not 0.0 <= warmup <= 1.0:
            raise ValueError(f"SCAN: warmup must be a fraction of training in [0, 1], "
                             f"got {warmup}")
        self.config: dict[str, Any] = dict(
            vocab=vocab, img_dim=img_dim, embed_size=embed_size, word_dim=word_dim,
            margin=margin, attention=attention, agg=agg, lambda_softmax=lambda_softmax,
            lambda_lse=lambda_lse, raw_feature_norm=raw_feature_norm,
            max_violation=max_violation, num_layers=num_layers, bi_gru=bi_gru,
            chunk_size=list(chunk_size) if isinstance(chunk_size, tuple) else chunk_size,
            warmup=warmup)
        self.vocab = Vocabulary.from_dict(vocab)
        self.tokenize = self.vocab
        self.margin, self.max_violation, self.warmup = margin, max_violation, warmup
        self.xattn = dict(attention=attention, agg=agg, lambda_softmax=lambda_softmax,
                          lambda_lse=lambda_lse, raw_feature_norm=raw_feature_norm,
                          chunk_size=tuple(chunk_size) if isinstance(chunk_size, list)
                          else chunk_size)
        self.img_enc = RegionProjection(img_dim, embed_size, normalize=True)
        self.txt_enc = RNNTextEncoder(len(self.vocab), word_dim, embed_size, rnn="gru",
                                      num_layers=num_layers, bidirectional=bi_gru)

    def encode_images(self, images: Tensor, n_regions: Tensor | None = None) -> Tensor:
        """(n, R, D) region features -> (n, R, e) l2-normalised region embeddings."""
        return self.img_enc(images)

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(n, L) tokens -> (n, L, e) l2-normalised word states (directions averaged)."""
        words, _ = self.txt_enc(tokens, lengths)
        return l2norm(words)

    def similarity(self, img_emb: Tensor, cap_emb: Tensor, cap_lens: Tensor | None = None,
                   img_lens: Tensor | None = None) -> Tensor:
        """Cross-attention scores (n_img, n_cap), see :func:`xattn_scores`; in float32, outside
        autocast (the logits are scaled by ``lambda_softmax``: bfloat16 would round them)."""
        if cap_lens is None:
            cap_lens = torch.full((cap_emb.shape[0],), cap_emb.shape[1], dtype=torch.long)
        with autocast_off(img_emb):
            return xattn_scores(full_precision(img_emb), full_precision(cap_emb), cap_lens,
                                img_lens=img_lens, **self.xattn)

    def pair_scores(self, img_emb: Tensor, cap_emb: Tensor, img_idx: Tensor, cap_idx: Tensor,
                    cap_lens: Tensor, img_lens: Tensor | None = None,
                    block: int = 4096) -> Tensor:
        """Scores of the pairs (img_idx[p], cap_idx[p]) -> (P,), ``block`` pairs at a time, each
        block's captions trimmed to its longest (as MMCA's ``pair_scores``: a two-stage system
        scores only its shortlists). Equal to the matching entries of :meth:`similarity`."""
        kw = {k: v for k, v in self.xattn.items() if k != "chunk_size"}
        out = []
        for s in range(0, len(img_idx), block):
            ii, cc = img_idx[s:s + block], cap_idx[s:s + block]
            lens = cap_lens[cc]
            il = None if img_lens is None else img_lens[ii]
            with autocast_off(img_emb):
                out.append(xattn_pair_scores(full_precision(img_emb[ii]),
                                             full_precision(cap_emb[cc, :int(lens.max())]),
                                             lens, il, **kw))
        return torch.cat(out) if out else img_emb.new_zeros(0)

    def loss(self, batch: dict[str, Tensor], progress: float,
             gather: Any = None) -> tuple[Tensor, dict[str, float]]:
        """Hinge triplet loss on the B x B scores: the hardest negatives when ``max_violation``
        and the run is past its ``warmup`` fraction (``progress``), else the sum over all."""
        if gather is not None:
            raise ValueError("SCAN.loss: gathering negatives across ranks is not supported "
                             "(captions of different ranks have different lengths); train "
                             "SCAN with gathering off")
        img = self.encode_images(batch["images"], batch.get("n_regions"))
        cap = self.encode_captions(batch["tokens"], batch["lengths"])
        scores = self.similarity(img, cap, batch["lengths"], batch.get("n_regions"))
        hardest = self.max_violation and progress >= self.warmup
        with autocast_off(scores):
            loss = hinge_triplet_loss(scores, margin=self.margin, max_violation=hardest)
        return loss, {}


class SumMax(SCAN):
    """SCAN's Table 3 baseline (Eqs. 9-10): SCAN's encoders scored by the sum over words (t2i)
    or regions (i2t) of the maximum raw cosine, without attention."""

    name = "summax"

    def similarity(self, img_emb: Tensor, cap_emb: Tensor, cap_lens: Tensor | None = None,
                   img_lens: Tensor | None = None) -> Tensor:
        """Sum-Max scores (n_img, n_cap), see :func:`summax_scores`; in float32."""
        if cap_lens is None:
            cap_lens = torch.full((cap_emb.shape[0],), cap_emb.shape[1], dtype=torch.long)
        with autocast_off(img_emb):
            return summax_scores(full_precision(img_emb), full_precision(cap_emb), cap_lens,
                                 attention=self.xattn["attention"], img_lens=img_lens,
                                 chunk_size=self.xattn["chunk_size"])


class SCANEnsemble(nn.Module):
    """Two SCAN models whose similarities are averaged (SCAN Tables 1-2: Flickr30K pairs
    t-i AVG with i-t LSE, COCO pairs t-i LSE with i-t AVG).

    Embeddings of both members are concatenated on the last axis: (n, R, 2e) and (n, L, 2e).
    Both members must share the vocabulary (the tokenizer is the first member's).
    """

    name = "scan_ensemble"

    def __init__(self, members: list[dict]) -> None:
        super().__init__()
        if len(members) != 2:
            raise ValueError(f"SCANEnsemble: expected 2 member configs, got {len(members)}")
        if members[0]["vocab"] != members[1]["vocab"]:
            raise ValueError("SCANEnsemble: members must share one vocabulary")
        self.config: dict[str, Any] = dict(members=members)
        self.members = nn.ModuleList(SCAN(**m) for m in members)
        self.tokenize = self.members[0].tokenize
        self.sizes = [m["embed_size"] if "embed_size" in m else 1024 for m in members]

    @classmethod
    def from_models(cls, first: SCAN, second: SCAN) -> "SCANEnsemble":
        """The ensemble of two trained SCAN models (weights copied)."""
        ens = cls([first.config, second.config])
        ens.members[0].load_state_dict(first.state_dict())
        ens.members[1].load_state_dict(second.state_dict())
        return ens

    def encode_images(self, images: Tensor, n_regions: Tensor | None = None) -> Tensor:
        return torch.cat([m.encode_images(images, n_regions) for m in self.members], -1)

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.cat([m.encode_captions(tokens, lengths) for m in self.members], -1)

    @staticmethod
    def average(first: Any, second: Any) -> Any:
        """The ensemble's scores from its two members' scores: their mean (tensors or arrays of
        the same shape, or lists of fold matrices as ``evaluate(..., return_sims=True)`` gives)."""
        if isinstance(first, list):
            return [SCANEnsemble.average(a, b) for a, b in zip(first, second, strict=True)]
        return (first + second) / 2

    def similarity(self, img_emb: Tensor, cap_emb: Tensor, cap_lens: Tensor | None = None,
                   img_lens: Tensor | None = None) -> Tensor:
        """Mean of the members' cross-attention scores (n_img, n_cap)."""
        imgs, caps = img_emb.split(self.sizes, -1), cap_emb.split(self.sizes, -1)
        return self.average(*(m.similarity(i, c, cap_lens, img_lens)
                              for m, i, c in zip(self.members, imgs, caps)))

    def loss(self, batch: dict[str, Tensor], progress: float,
             gather: Any = None) -> tuple[Tensor, dict[str, float]]:
        """Sum of the members' losses (their parameters are disjoint: trains both at once)."""
        losses = [m.loss(batch, progress, gather)[0] for m in self.members]
        return losses[0] + losses[1], {"loss_first": float(losses[0]),
                                       "loss_second": float(losses[1])}


def word_attention(model: SCAN, image_feats: ArrayLike, n_regions: int, tokens: Tensor,
                   lengths: Tensor) -> np.ndarray:
    """Text-to-image attention of one caption's words over one image's regions -> (L, R).

    ``image_feats`` (R_max, D) are the image's raw region features, of which the first
    ``n_regions`` are valid; ``tokens`` (1, L_max) and ``lengths`` (1,) are what
    ``model.tokenize([caption])`` returns. The weights are those :func:`xattn_scores` uses for
    ``attention="t2i"``: the model's raw-feature normalisation of the word-region similarities
    over the words (per region), then a softmax over the regions with its ``lambda_softmax``;
    every row (word) sums to 1. ``L`` counts ``<start>`` and ``<end>``.
    """
    if model.xattn["attention"] != "t2i":
        raise ValueError(f"word_attention: needs a text-to-image model, got attention="
                         f"{model.xattn['attention']!r}")
    dev = next(model.parameters()).device
    feats = torch.from_numpy(np.array(image_feats[:n_regions], dtype=np.float32))  # a copy
    n_words = int(lengths[0])
    with torch.no_grad():
        v = model.encode_images(feats[None].to(dev))[0]  # (R, e)
        w = model.encode_captions(tokens.to(dev), lengths.to(dev))[0, :n_words]  # (L, e)
        logits = raw_norm(w @ v.T, None, 0, model.xattn["raw_feature_norm"],
                           model.xattn["lambda_softmax"])  # normalised over words (axis 0)
        return torch.softmax(logits, dim=1).cpu().numpy()

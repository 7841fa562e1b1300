"""Plain ports of the official VSE++ and SCAN training steps, for fidelity tests.

Written from reading ``fartashf/vsepp`` (``model.py``: ``l2norm``, ``EncoderImagePrecomp``,
``EncoderText``, ``ContrastiveLoss``, ``VSE.train_emb``; ``train.py``: Adam, ``grad_clip`` 2)
and ``kuanghuei/SCAN`` (``model.py``: ``l2norm``, ``EncoderImagePrecomp``, ``EncoderText`` with
the bi-GRU directions averaged, ``func_attention``, ``cosine_similarity``, ``xattn_score_t2i``,
``ContrastiveLoss``, ``SCAN.train_emb``), in today's PyTorch and kept deliberately plain: the
official order of operations, one caption at a time in the cross attention, the batch sorted by
caption length as the official ``collate_fn`` does. Nothing here imports ``xmrlib`` models.

Two adaptations, both needed to feed the book's data to the official code and neither changing
what the code computes on the official data:

* VSE++ reads one global feature per image (vsepp's precomp files); region features are
  mean-pooled over their valid regions before the port sees them (the book's global models do
  the same, :class:`xmrlib.models.common.GlobalImageEncoder`).
* SCAN's data has 36 regions in every image, none padded; Shapes images have 3-6 regions padded
  with zeros to 6. The port encodes and scores each image on its own valid regions (images with
  equal region counts together, as the official code takes all images at once). On unpadded
  data this is the official computation exactly. (Fed padded rows, the official code would
  l2-normalise all-zero embeddings, whose gradient is NaN at the fc's zero-bias start.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


# ----------------------------------------------------------------------------- VSE++

def vsepp_l2norm(x: Tensor) -> Tensor:
    """vsepp's ``l2norm``: rows divided by their norm, no epsilon."""
    return x / x.pow(2).sum(dim=1, keepdim=True).sqrt()


def xavier_init_(fc: nn.Linear) -> None:
    """The official ``init_weights`` of the image fc: U(-r, r), r = sqrt(6 / (in + out)); bias 0."""
    r = math.sqrt(6.0) / math.sqrt(fc.in_features + fc.out_features)
    fc.weight.data.uniform_(-r, r)
    fc.bias.data.fill_(0)


class VseppImagePrecomp(nn.Module):
    def __init__(self, img_dim: int, embed_size: int, no_imgnorm: bool = False) -> None:
        super().__init__()
        self.no_imgnorm = no_imgnorm
        self.fc = nn.Linear(img_dim, embed_size)
        xavier_init_(self.fc)

    def forward(self, images: Tensor) -> Tensor:
        features = self.fc(images)
        return features if self.no_imgnorm else vsepp_l2norm(features)


class VseppText(nn.Module):
    def __init__(self, vocab_size: int, word_dim: int, embed_size: int, num_layers: int = 1
                 ) -> None:
        super().__init__()
        self.embed_size = embed_size
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True)
        self.embed.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x: Tensor, lengths: list[int]) -> Tensor:
        x = self.embed(x)
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True))
        padded, _ = pad_packed_sequence(out, batch_first=True)
        idx = torch.tensor(lengths).view(-1, 1, 1).expand(x.size(0), 1, self.embed_size) - 1
        return vsepp_l2norm(torch.gather(padded, 1, idx).squeeze(1))


def official_contrastive(scores: Tensor, margin: float, max_violation: bool) -> Tensor:
    """``ContrastiveLoss.forward`` of both repositories, from the score matrix on."""
    diagonal = scores.diag().view(scores.size(0), 1)
    d1 = diagonal.expand_as(scores)
    d2 = diagonal.t().expand_as(scores)
    cost_s = (margin + scores - d1).clamp(min=0)
    cost_im = (margin + scores - d2).clamp(min=0)
    mask = torch.eye(scores.size(0)) > 0.5
    cost_s = cost_s.masked_fill_(mask, 0)
    cost_im = cost_im.masked_fill_(mask, 0)
    if max_violation:
        cost_s = cost_s.max(1)[0]
        cost_im = cost_im.max(0)[0]
    return cost_s.sum() + cost_im.sum()


# ----------------------------------------------------------------------------- SCAN

def scan_l2norm(x: Tensor, dim: int, eps: float = 1e-8) -> Tensor:
    """SCAN's ``l2norm``: divided by ``norm + eps`` along ``dim``."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


class ScanImagePrecomp(nn.Module):
    def __init__(self, img_dim: int, embed_size: int, no_imgnorm: bool = False) -> None:
        super().__init__()
        self.no_imgnorm = no_imgnorm
        self.fc = nn.Linear(img_dim, embed_size)
        xavier_init_(self.fc)

    def forward(self, images: Tensor) -> Tensor:
        features = self.fc(images)
        return features if self.no_imgnorm else scan_l2norm(features, dim=-1)


class ScanText(nn.Module):
    def __init__(self, vocab_size: int, word_dim: int, embed_size: int, num_layers: int = 1,
                 use_bi_gru: bool = True) -> None:
        super().__init__()
        self.use_bi_gru = use_bi_gru
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True,
                          bidirectional=use_bi_gru)
        self.embed.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x: Tensor, lengths: list[int]) -> tuple[Tensor, list[int]]:
        x = self.embed(x)
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True))
        cap_emb, _ = pad_packed_sequence(out, batch_first=True)
        if self.use_bi_gru:
            half = cap_emb.size(2) // 2
            cap_emb = (cap_emb[:, :, :half] + cap_emb[:, :, half:]) / 2
        return scan_l2norm(cap_emb, dim=-1), lengths


def func_attention(query: Tensor, context: Tensor, smooth: float) -> Tensor:
    """The official ``func_attention`` with ``clipped_l2norm``: attended context (n, Lq, d)."""
    n, source_len = context.size(0), context.size(1)
    query_len = query.size(1)
    attn = torch.bmm(context, query.transpose(1, 2))  # (n, Lc, Lq)
    attn = nn.LeakyReLU(0.1)(attn)
    attn = scan_l2norm(attn, 2)
    attn = attn.transpose(1, 2).contiguous().view(n * query_len, source_len)
    attn = torch.softmax(attn * smooth, dim=1).view(n, query_len, source_len)
    return torch.bmm(attn, context)  # (n, Lq, d)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int, eps: float = 1e-8) -> Tensor:
    w12 = torch.sum(x1 * x2, dim)
    w1, w2 = torch.norm(x1, 2, dim), torch.norm(x2, 2, dim)
    return w12 / (w1 * w2).clamp(min=eps)


def xattn_score_t2i(groups: list[tuple[Tensor, Tensor]], n_image: int, captions: Tensor,
                    cap_lens: list[int], lambda_softmax: float, lambda_lse: float) -> Tensor:
    """The official ``xattn_score_t2i`` with LogSumExp: one caption at a time, repeated over the
    images. ``groups``: ``(rows, img_emb (n_rows, r, d))`` per region count ``r``; the official
    code has one group (every image has 36 regions)."""
    columns = []
    for i in range(captions.size(0)):
        cap_i = captions[i, :cap_lens[i], :].unsqueeze(0)
        col = torch.zeros(n_image, dtype=captions.dtype)
        for rows, imgs in groups:
            cap_i_expand = cap_i.repeat(len(rows), 1, 1)
            context = func_attention(cap_i_expand, imgs, lambda_softmax)
            row_sim = cosine_similarity(cap_i_expand, context, dim=2)  # (n, L)
            row_sim = torch.log(torch.exp(row_sim * lambda_lse).sum(dim=1)) / lambda_lse
            col = col.index_put((rows,), row_sim)
        columns.append(col[:, None])
    return torch.cat(columns, 1)


# ----------------------------------------------------------------------------- steps

class OfficialStep:
    """One ``train_emb`` of the official code: embed, loss, backward, ``clip_grad_norm`` over
    the text encoder's and the image fc's parameters, Adam step.

    ``kind`` is ``"vsepp"`` (``images`` (B, D) pooled features) or ``"scan"`` (``images``
    (B, R, D) with ``n_regions``). :meth:`step` returns the loss, the total gradient norm before
    clipping, and the embeddings of the batch (detached) for statistics.
    """

    def __init__(self, kind: str, img_enc: nn.Module, txt_enc: nn.Module, lr: float,
                 margin: float = 0.2, max_violation: bool = True, grad_clip: float = 2.0,
                 lambda_softmax: float = 9.0, lambda_lse: float = 6.0) -> None:
        self.kind, self.img_enc, self.txt_enc = kind, img_enc, txt_enc
        self.margin, self.max_violation, self.grad_clip = margin, max_violation, grad_clip
        self.lambda_softmax, self.lambda_lse = lambda_softmax, lambda_lse
        self.params = list(txt_enc.parameters()) + list(img_enc.fc.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    def scores(self, images: Tensor, tokens: Tensor, lengths: list[int],
               n_regions: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if self.kind == "vsepp":
            img_emb = self.img_enc(images)
            cap_emb = self.txt_enc(tokens, lengths)
            return img_emb.mm(cap_emb.t()), img_emb, cap_emb
        # each image's valid regions only (padded rows would be l2-normalised zeros, whose
        # gradient is NaN); one group per region count
        groups = [(rows, self.img_enc(images[rows, :r])) for r in n_regions.unique().tolist()
                  for rows in [(n_regions == r).nonzero().flatten()]]
        img_emb = images.new_zeros(*images.shape[:2], self.img_enc.fc.out_features)
        for (rows, emb) in groups:
            img_emb[rows, :emb.shape[1]] = emb.detach()
        cap_emb, cap_lens = self.txt_enc(tokens, lengths)
        return (xattn_score_t2i(groups, images.size(0), cap_emb, cap_lens, self.lambda_softmax,
                                self.lambda_lse), img_emb, cap_emb)

    def step(self, images: Tensor, tokens: Tensor, lengths: Tensor,
             n_regions: Tensor | None = None) -> dict:
        order = torch.argsort(lengths, descending=True, stable=True)  # collate_fn's sort
        images, tokens, lens = images[order], tokens[order], lengths[order].tolist()
        nreg = None if n_regions is None else n_regions[order]
        tokens = tokens[:, :max(lens)]
        scores, img_emb, cap_emb = self.scores(images, tokens, lens, nreg)
        self.optimizer.zero_grad()
        loss = official_contrastive(scores, self.margin, self.max_violation)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        inverse = torch.argsort(order)
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm),
                "scores": scores.detach()[inverse][:, inverse],
                "img_emb": img_emb.detach()[inverse], "cap_emb": cap_emb.detach()[inverse]}

"""A3VSE: adversarial attentive alignment for visual-semantic embeddings (Huang, Kang, Liu, Chang,
Hauptmann. *Annotation efficient cross-modal retrieval with adversarial attentive alignment.*
ACM MM 2019). There is no public code: the paper is the specification.

A *sparse parallel corpus* has a few annotated pairs (v, t) and many un-annotated images v^u;
each v^u comes with its **regional semantics** s ("blue car white building ...", detector phrases
sorted by confidence), which forms a pseudo pair (v^u, s). The model:

* **Feature extractors** (Sec. 3.2): a fully connected layer over the region features
  ``F^v`` and a word embedding + LSTM ``F^t``, shared by captions t and semantic sequences s.
* **Attentive encoders** (Sec. 3.3, Eq. 1): ``K`` context-aware heads per modality. Head k
  weighs entity i (region or word) by ``W_ik = softmax_i(lambda * alpha_ik)`` with
  ``alpha_ik = tanh(P_k mean_i x_i) . tanh(Q_k x_i)``; the instance embedding is the
  concatenation of the K weighted sums (dimension ``K * embed_size``), l2-normalised so that the
  inner product is the paper's cosine similarity. The context vectors have the
  embedding size, as the paper fixes ("the same dimension is shared by all the context vectors
  in the attention modules"): ``attn_dim=None`` means ``embed_size``.
* **Triplet alignment** (Eqs. 2-3): ``beta * l^p(v, t; 0.2) + (1 - beta) * l^p(v^u, s; 0.3)``,
  hinge with the hardest negative of the batch (``max_violation``), *averaged* over the batch
  (Eq. 2).
* **Adversarial alignment** (Eqs. 4-8): six domain discriminators (intra v-v^u, t-s; cross v-t,
  v^u-s; transitive v-s, v^u-t) behind gradient reversal layers (Ganin & Lempitsky 2015) whose
  coefficient follows ``gamma(p) = 2 / (1 + exp(-10 p)) - 1``, weights ``lambda_*`` of Sec. 4.3.

Optimisation (Eq. 10): the discriminators maximise the log-likelihood ``l^d`` of Eq. 4, the
encoders minimise it. We implement this as one minimised loss
``l^tri + sum_j lambda_j * BCE_j(GRL_gamma(embeddings))`` with ``BCE_j = -l^d_j``: the
discriminators descend their BCE, while the reversal layer hands the encoders ``-gamma`` times
that gradient, so they ascend it (confuse the discriminators).

Choices where the paper is silent (parameters of the constructor, listed in chapter 06):

* ``lambda_attn`` (the softmax temperature lambda_v / lambda_t): 1.0 by default.
* mean context and softmax over *valid* entities only (padded regions/words get no weight).
* ``max_violation``: the hardest negative of the batch (the paper's Eq. 2, and the ``full``
  profile) or the sum of the hinge over all negatives. From a random start with no warm-up, the
  hardest-negative hinge of a few hundred CPU steps stays at its collapse value (all embeddings
  alike, loss = twice the margin) and recall stays near chance (VSE++ trained the same way is
  weak too); the short CPU profiles therefore sum over all negatives, for A3VSE and the
  baselines alike (chapter 06 measures both).
* ``adv_scale`` multiplies every ``lambda_*`` (1: the paper's weights, in every profile).
* discriminator architecture: ``Linear(K*H, disc_hidden) - ReLU - Linear(disc_hidden, 1)``,
  a logit, on the l2-normalised instance embeddings; ``disc_hidden`` 512 by default.
* region projection without l2 normalisation per region (the paper feeds raw features).
* ``semantics=False`` (Table 5 "No s", the vanilla model): only ``l^p(v, t)`` (not scaled by
  beta) and no discriminator at all; ``attention=False`` (Table 5 "without attention"): masked
  mean pooling of the encoded entities (dimension ``embed_size``); ``adversarial`` lists the
  active groups among ``intra``, ``cross``, ``trans`` (``()``: "without L_adv").

Every module is built whatever the switches (so a checkpoint always has the same parameter
names); a switched-off part is never called, so its parameters get no gradient.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmrlib.losses import hinge_triplet_loss
from xmrlib.models.common import (RegionProjection, RNNTextEncoder, autocast_off, full_precision,
                                  l2norm, length_mask, masked_mean)
from xmrlib.vocab import Vocabulary

#: discriminator name -> (group, first domain, second domain); domains: v, vu (images), t, s (text)
DISCRIMINATORS: dict[str, tuple[str, str, str]] = {
    "v_vu": ("intra", "v", "vu"), "t_s": ("intra", "t", "s"),
    "v_t": ("cross", "v", "t"), "vu_s": ("cross", "vu", "s"),
    "v_s": ("trans", "v", "s"), "vu_t": ("trans", "vu", "t"),
}
GROUPS = ("intra", "cross", "trans")
#: the paper's weights (Sec. 4.3): lambda_vvu 0.2, lambda_ts 0.1, lambda_vt = lambda_vus 0.5,
#: lambda_vs = lambda_vut 0.3
PAPER_WEIGHTS: dict[str, float] = {"v_vu": 0.2, "t_s": 0.1, "v_t": 0.5, "vu_s": 0.5,
                                   "v_s": 0.3, "vu_t": 0.3}


class GradientReversalFunction(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-coeff`` (Ganin 2015)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, coeff: float) -> Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.coeff * grad, None


def gradient_reversal(x: Tensor, coeff: float = 1.0) -> Tensor:
    """``x`` unchanged forward; gradient ``-coeff * grad`` backward."""
    return GradientReversalFunction.apply(x, coeff)


class GradientReversal(nn.Module):
    """Module form of :func:`gradient_reversal` with a settable coefficient."""

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = coeff

    def forward(self, x: Tensor) -> Tensor:
        return gradient_reversal(x, self.coeff)


def grl_schedule(progress: float, eta: float = 10.0) -> float:
    """The reversal coefficient ``gamma = 2 / (1 + exp(-eta p)) - 1`` (0 at p=0, ~1 at p=1)."""
    return 2.0 / (1.0 + math.exp(-eta * progress)) - 1.0


def domain_bce(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """``-l^d`` of Eq. 4: ``-(mean log D(a) + mean log(1 - D(b)))`` with ``D = sigmoid(logit)``.

    Domain A is labelled 1, domain B 0; ``softplus(-z) = -log sigmoid(z)`` keeps it stable.
    """
    return F.softplus(-logits_a).mean() + F.softplus(logits_b).mean()


class AttentiveEncoder(nn.Module):
    """K-head context-aware attention over entities (Eq. 1): (n, T, H) + lengths -> (n, K*H)."""

    def __init__(self, dim: int, heads: int = 3, attn_dim: int | None = None,
                 temperature: float = 1.0) -> None:
        super().__init__()
        attn_dim = attn_dim or dim
        self.heads, self.attn_dim, self.temperature = heads, attn_dim, temperature
        self.P = nn.Linear(dim, heads * attn_dim, bias=False)  # the K matrices P_k stacked
        self.Q = nn.Linear(dim, heads * attn_dim, bias=False)  # the K matrices Q_k stacked
        nn.init.xavier_uniform_(self.P.weight)
        nn.init.xavier_uniform_(self.Q.weight)

    def weights(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Attention weights W (n, K, T): softmax over the valid entities of each row."""
        n, t, _ = x.shape
        if lengths is None:
            lengths = torch.full((n,), t, dtype=torch.long, device=x.device)
        context = masked_mean(x, lengths)  # (n, H)
        p = torch.tanh(self.P(context)).view(n, self.heads, 1, self.attn_dim)  # (n, K, 1, K')
        q = torch.tanh(self.Q(x)).view(n, t, self.heads, self.attn_dim).transpose(1, 2)
        alpha = (p * q).sum(-1)  # (n, K, T)
        valid = length_mask(lengths.clamp(min=1), t).unsqueeze(1)  # (n, 1, T)
        return (self.temperature * alpha).masked_fill(~valid, float("-inf")).softmax(dim=-1)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        w = self.weights(x, lengths)  # (n, K, T)
        return (w @ x).flatten(1)  # (n, K, H) -> (n, K*H)


class DomainDiscriminator(nn.Module):
    """Two-layer MLP giving the logit of "domain A" for an embedding: (n, e) -> (n,)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


class A3VSE(nn.Module):
    """Attentive encoders + weighted triplet alignment + six adversarial discriminators.

    Batches: the annotated pairs under the ``make_loader`` keys (``images``, ``n_regions``,
    ``tokens``, ``lengths``) and, when ``semantics`` is on, the un-annotated images with their
    semantic sequences under ``u_images``, ``u_n_regions``, ``s_tokens``, ``s_lengths`` (see
    :class:`xmrlib.data.sparse.SparseLoader`). Defaults are the paper's (H = 512, K = 3, LSTM,
    margins 0.2 / 0.3, beta 0.8, hardest negatives, the lambda weights of Sec. 4.3).
    """

    name = "a3vse"

    def __init__(self, vocab: dict, img_dim: int, embed_size: int = 512, word_dim: int = 300,
                 heads: int = 3, attn_dim: int | None = None, lambda_attn: float = 1.0,
                 rnn: str = "lstm", margin_vt: float = 0.2, margin_vs: float = 0.3,
                 beta: float = 0.8, max_violation: bool = True,
                 weights: dict[str, float] | None = None, adv_scale: float = 1.0,
                 disc_hidden: int = 512, grl_eta: float = 10.0, semantics: bool = True,
                 attention: bool = True, adversarial: Sequence[str] = GROUPS) -> None:
        super().__init__()
        unknown = set(adversarial) - set(GROUPS)
        if unknown:
            raise ValueError(f"adversarial groups {sorted(unknown)} unknown: "
                             f"expected some of {GROUPS}")
        weights = {**PAPER_WEIGHTS, **(weights or {})}
        if set(weights) != set(DISCRIMINATORS):
            raise ValueError(f"weights keys {sorted(weights)}: expected {sorted(DISCRIMINATORS)}")
        self.config: dict[str, Any] = dict(
            vocab=vocab, img_dim=img_dim, embed_size=embed_size, word_dim=word_dim, heads=heads,
            attn_dim=attn_dim, lambda_attn=lambda_attn, rnn=rnn, margin_vt=margin_vt,
            margin_vs=margin_vs, beta=beta, max_violation=max_violation, weights=weights,
            adv_scale=adv_scale, disc_hidden=disc_hidden,
            grl_eta=grl_eta, semantics=semantics, attention=attention,
            adversarial=[g for g in GROUPS if g in adversarial])
        self.vocab = Vocabulary.from_dict(vocab)
        self.tokenize = self.vocab
        self.margin_vt, self.margin_vs, self.beta = margin_vt, margin_vs, beta
        self.max_violation = max_violation
        self.weights = {d: adv_scale * w for d, w in weights.items()}
        self.grl_eta = grl_eta
        self.semantics, self.attention = semantics, attention
        self.active = [d for d, (g, _, _) in DISCRIMINATORS.items()
                       if semantics and g in adversarial]
        self.img_fc = RegionProjection(img_dim, embed_size, normalize=False)
        self.txt_rnn = RNNTextEncoder(len(self.vocab), word_dim, embed_size, rnn=rnn)
        self.img_attn = AttentiveEncoder(embed_size, heads, attn_dim, lambda_attn)
        self.txt_attn = AttentiveEncoder(embed_size, heads, attn_dim, lambda_attn)
        self.embed_dim = heads * embed_size if attention else embed_size
        self.discriminators = nn.ModuleDict(
            {d: DomainDiscriminator(self.embed_dim, disc_hidden) for d in DISCRIMINATORS})

    # ------------------------------------------------------------------ encoders (G^v, G^t)

    def encode_images(self, images: Tensor, n_regions: Tensor | None = None) -> Tensor:
        """(n, R, D) region features -> (n, e) l2-normalised instance embeddings."""
        regions = self.img_fc(images)  # (n, R, H)
        pooled = self.img_attn(regions, n_regions) if self.attention else masked_mean(
            regions, n_regions)
        return l2norm(pooled)

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(n, L) padded tokens (captions or semantic sequences) -> (n, e) l2-normalised."""
        words, _ = self.txt_rnn(tokens, lengths)  # (n, L, H), zeros at padding
        pooled = self.txt_attn(words, lengths) if self.attention else masked_mean(words, lengths)
        return l2norm(pooled)

    def similarity(self, img_emb: Tensor, cap_emb: Tensor, cap_lens: Tensor | None = None,
                   img_lens: Tensor | None = None) -> Tensor:
        """Cosine similarities (n_img, n_cap) of the normalised embeddings, in float32."""
        with autocast_off(img_emb):
            return full_precision(img_emb) @ full_precision(cap_emb).t()

    # ------------------------------------------------------------------ losses

    def triplet(self, img: Tensor, txt: Tensor, margin: float) -> Tensor:
        """``l^p`` of Eq. 2: hinge both ways (hardest negative, or the sum over all negatives
        without ``max_violation``), averaged over the batch; in float32, outside autocast."""
        with autocast_off(img):
            # (L, L), positives on the diagonal
            scores = self.similarity(full_precision(img), full_precision(txt))
            return hinge_triplet_loss(scores, margin=margin, max_violation=self.max_violation,
                                      reduction="mean")

    def adversarial_losses(self, emb: dict[str, Tensor], gamma: float) -> dict[str, Tensor]:
        """BCE (``-l^d``) of every active discriminator on the reversed embeddings."""
        reversed_emb = {k: gradient_reversal(full_precision(x), gamma) for k, x in emb.items()}
        out = {}
        for d in self.active:
            _, a, b = DISCRIMINATORS[d]
            disc = self.discriminators[d]
            out[d] = domain_bce(disc(reversed_emb[a]), disc(reversed_emb[b]))
        return out

    def loss(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        """``l^tri + sum_j lambda_j BCE_j`` (see the module docstring); stats per term."""
        v = self.encode_images(batch["images"], batch.get("n_regions"))
        t = self.encode_captions(batch["tokens"], batch["lengths"])
        l_vt = self.triplet(v, t, self.margin_vt)
        if not self.semantics:
            return l_vt, {"tri_vt": float(l_vt.detach())}
        if "u_images" not in batch:
            raise KeyError("A3VSE with semantics=True needs compound batches with u_images, "
                           "u_n_regions, s_tokens, s_lengths (xmrlib.data.sparse.SparseLoader)")
        vu = self.encode_images(batch["u_images"], batch.get("u_n_regions"))
        s = self.encode_captions(batch["s_tokens"], batch["s_lengths"])
        l_vs = self.triplet(vu, s, self.margin_vs)
        total = self.beta * l_vt + (1 - self.beta) * l_vs
        gamma = grl_schedule(progress, self.grl_eta)
        stats = {"tri_vt": float(l_vt.detach()), "tri_vs": float(l_vs.detach()), "gamma": gamma}
        for d, bce in self.adversarial_losses({"v": v, "vu": vu, "t": t, "s": s}, gamma).items():
            total = total + self.weights[d] * bce
            stats[f"bce_{d}"] = float(bce.detach())
        return total, stats


# ---------------------------------------------------------------------- moved names

#: chapter 06's experiments, moved to :mod:`xmrlib.sparse_runs`; they still import from here
_MOVED = {"ABLATIONS": "xmrlib.sparse_runs", "fit_sparse": "xmrlib.sparse_runs",
          "sg_baseline_similarity": "xmrlib.sparse_runs", "KIND_LABELS": "xmrlib.sparse_runs",
          "embed_domains": "xmrlib.sparse_runs", "SparseRuns": "xmrlib.sparse_runs",
          "paper_row_id": "xmrlib.sparse_runs", "rsum_per_image": "xmrlib.evaluation.bootstrap"}


def __getattr__(name: str) -> Any:
    """The names of :data:`_MOVED`, imported lazily (:mod:`xmrlib.sparse_runs` imports this
    module)."""
    if name in _MOVED:
        from importlib import import_module

        return getattr(import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
  inner product is the paper's cosine similarity.
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
* ``attn_dim`` K' (size of P_k, Q_k): ``embed_size`` (the paper: "the same dimension is shared
  by all the context vectors in the attention modules").
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

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmrlib.losses import hinge_triplet_loss
from xmrlib.models.common import (RegionProjection, RNNTextEncoder, autocast_off, l2norm,
                                  length_mask, masked_mean)
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
            return img_emb.float() @ cap_emb.float().t()

    # ------------------------------------------------------------------ losses

    def triplet(self, img: Tensor, txt: Tensor, margin: float) -> Tensor:
        """``l^p`` of Eq. 2: hinge both ways (hardest negative, or the sum over all negatives
        without ``max_violation``), averaged over the batch; in float32, outside autocast."""
        with autocast_off(img):
            scores = self.similarity(img.float(), txt.float())  # (L, L), positives on the diagonal
            return hinge_triplet_loss(scores, margin=margin, max_violation=self.max_violation,
                                      reduction="mean")

    def adversarial_losses(self, emb: dict[str, Tensor], gamma: float) -> dict[str, Tensor]:
        """BCE (``-l^d``) of every active discriminator on the reversed embeddings."""
        reversed_emb = {k: gradient_reversal(x.float(), gamma) for k, x in emb.items()}
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


# ---------------------------------------------------------------------- experiments (chapter 06)

#: Table 5 rows (the paper's method names) -> (model overrides, semantics kind or None)
ABLATIONS: dict[str, tuple[dict[str, Any], str | None]] = {
    "No s": ({"semantics": False, "adversarial": []}, None),
    "Swap s with s_g": ({}, "global"),
    "s, without attention": ({"attention": False}, "regional"),
    "s, without L_adv": ({"adversarial": []}, "regional"),
    "Without l_intra": ({"adversarial": ["cross", "trans"]}, "regional"),
    "Without l_cross": ({"adversarial": ["intra", "trans"]}, "regional"),
    "Without l_trans": ({"adversarial": ["intra", "cross"]}, "regional"),
    "Full model": ({}, "regional"),
}


def fit_sparse(model_name: str, model_config: dict[str, Any], split: Any, dev_data: Any,
               cfg: Any, semantics: str | None = "regional", steps_per_epoch: int | None = None,
               u_batch_size: int | None = None, device: str | torch.device = "auto",
               progress: bool = False, root: Any = None) -> Any:
    """Train (or reload) ``model_name`` on a :class:`~xmrlib.data.sparse.SparseSplit`.

    The same function trains A3VSE and the baselines, so all see the same pairs for the same
    number of steps. ``model_config`` holds the constructor arguments except ``vocab`` and
    ``img_dim``, which come from the split: the vocabulary is built from the annotated captions
    plus, with ``semantics`` (``"regional"``/``"global"``, A3VSE only), the un-annotated
    images' sequences. ``semantics=None`` trains on the annotated pairs alone (the baselines'
    protocol and the vanilla A3VSE, "No s"). The run folder is keyed like ``fit_or_load``
    (model, training config, data identity) plus the sparse setting, so a rerun reloads it.
    Returns ``xmrlib.train.fit``'s result.
    """
    from xmrlib.data.sparse import SparseLoader
    from xmrlib.models import build_model
    from xmrlib.train import fit, run_data_identity, run_dir_for

    texts = split.annotated_captions() if semantics is None else split.vocabulary_texts(semantics)
    config = {**model_config, "vocab": Vocabulary.build(texts).to_dict(),
              "img_dim": int(split.data.images.shape[-1])}
    if model_name == A3VSE.name:
        config["semantics"] = semantics is not None
    elif semantics is not None:
        raise ValueError(f"semantics={semantics!r}: only A3VSE reads semantic sequences; "
                         f"baselines such as {model_name!r} train on the annotated pairs only")
    model = build_model(model_name, **config)
    loader = SparseLoader(split, model.tokenize, cfg.batch_size, semantics, u_batch_size,
                          seed=cfg.seed, steps_per_epoch=steps_per_epoch)
    data_id = {**run_data_identity(split.data, dev_data), "sparse": split.identity(),
               "semantics": semantics, "steps_per_epoch": steps_per_epoch,
               "u_batch_size": u_batch_size}
    run_dir = run_dir_for(model_name, model.config, cfg, data_id, root)
    return fit(model, loader, dev_data, cfg, run_dir, resume=True, device=device,
               progress=progress, data_id=data_id)


def sg_baseline_similarity(scenes: list[dict[str, Any]], captions: list[str],
                           seed: int = 0) -> np.ndarray:
    """The unsupervised s_g baseline (Sec. 4.2): score ``r = s_g . q`` with ``s_g`` the k-hot
    image-level tags of each image and ``q`` the k-hot tags a caption mentions (a tag matches
    when all its words, split at hyphens, occur in the caption). No training, no pairs. Ties
    (frequent: many images share a tag set) are broken by a seeded uniform jitter below 1e-3.
    Returns (n_img, n_cap)."""
    from xmrlib.data.sparse import global_tags, words

    image_tags = [global_tags(scene) for scene in scenes]
    vocab = sorted({t for tags in image_tags for t in tags})
    col = {t: j for j, t in enumerate(vocab)}
    s_g = np.zeros((len(scenes), len(vocab)), dtype=np.float32)
    for i, tags in enumerate(image_tags):
        s_g[i, [col[t] for t in tags]] = 1.0
    q = np.zeros((len(captions), len(vocab)), dtype=np.float32)
    for j, caption in enumerate(captions):
        present = set(words(caption))
        for t in vocab:
            q[j, col[t]] = float(all(w in present for w in t.split("-")))
    jitter = np.random.default_rng(seed).uniform(0, 1e-3, (len(scenes), len(captions)))
    return s_g @ q.T + jitter.astype(np.float32)


#: legend names of the four kinds of points of :func:`embed_domains`
KIND_LABELS = {"v": "annotated images v", "vu": "un-annotated images v^u", "t": "captions t",
               "s": "semantic sequences s"}


@torch.no_grad()
def embed_domains(model: A3VSE, split: Any, n: int = 200, semantics: str = "regional",
                  seed: int = 0, device: str | torch.device = "auto") -> dict[str, np.ndarray]:
    """Embeddings of ``n`` annotated images (``v``), ``n`` of their captions (``t``, one each),
    ``n`` un-annotated images (``vu``) and their semantic sequences (``s``) for the t-SNE of
    Figure 3. Returns ``{"v", "t", "vu", "s"}`` -> (n, e) arrays."""
    from xmrlib.utils import resolve_device

    dev = resolve_device(device)
    model = model.to(dev).eval()
    rng = np.random.default_rng(seed)
    ann = rng.choice(len(split.annotated), min(n, len(split.annotated)), replace=False)
    un = np.sort(rng.choice(len(split.unannotated), min(n, len(split.unannotated)),
                            replace=False))
    data = split.data

    def images(idx: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(data.images[idx], dtype=np.float32)).to(dev)
        r = torch.from_numpy(np.asarray(data.n_regions[idx], dtype=np.int64)).to(dev)
        return model.encode_images(x, r).float().cpu().numpy()

    def texts(strings: list[str]) -> np.ndarray:
        tokens, lengths = model.tokenize(strings)
        return model.encode_captions(tokens.to(dev), lengths.to(dev)).float().cpu().numpy()

    captions = [data.captions[split.caption_ids[i, 0]] for i in ann]
    sequences = split.semantic_sequences(semantics, images=split.unannotated[un])
    return {"v": images(split.annotated[ann]), "t": texts(captions),
            "vu": images(split.unannotated[un]), "s": texts(sequences)}


class SparseRuns:
    """The runs of chapter 06 under one set of settings, trained once and cached.

    ``a3vse_config`` / ``baseline_configs[name]`` are constructor arguments without ``vocab``
    and ``img_dim``; every run uses ``cfg`` (a ``TrainConfig``) and ``steps_per_epoch``, so all
    models and sparsity settings train for the same number of steps. ``metrics`` evaluates a
    run's best checkpoint on ``test`` with ``protocol`` (cached too).
    """

    def __init__(self, train: Any, dev: Any, test: Any, a3vse_config: dict[str, Any],
                 baseline_configs: dict[str, dict[str, Any]], cfg: Any,
                 steps_per_epoch: int | None = None, seed: int = 0, protocol: str = "1k",
                 device: str | torch.device = "auto") -> None:
        self.train, self.dev, self.test = train, dev, test
        self.a3vse_config, self.baseline_configs = a3vse_config, baseline_configs
        self.cfg, self.steps_per_epoch, self.seed = cfg, steps_per_epoch, seed
        self.protocol, self.device = protocol, device
        self._splits: dict[tuple[float, int], Any] = {}
        self._fits: dict[tuple, Any] = {}
        self._metrics: dict[tuple, dict[str, float]] = {}
        self._shares: dict[tuple, np.ndarray] = {}  # run key -> rsum_per_image on test (1k)

    def split(self, fraction: float, captions: int) -> Any:
        """The sparse split (fraction of images, captions per image) of this seed."""
        from xmrlib.data.sparse import sparse_split

        key = (float(fraction), int(captions))
        if key not in self._splits:
            self._splits[key] = sparse_split(self.train, fraction, captions, self.seed,
                                             require_semantics=fraction < 1)
        return self._splits[key]

    def fit(self, model: str, fraction: float, captions: int, ablation: str = "Full model"
            ) -> Any:
        """Train (or reload) A3VSE (``model="a3vse"``, with a Table 5 ``ablation`` row) or a
        baseline on the annotated pairs of a setting."""
        key = self._key(model, fraction, captions, ablation)
        if key not in self._fits:
            split = self.split(fraction, captions)
            if model == A3VSE.name:
                overrides, semantics = ABLATIONS[ablation]
                config = {**self.a3vse_config, **overrides}
            else:
                config, semantics = self.baseline_configs[model], None
            self._fits[key] = fit_sparse(model, config, split, self.dev, self.cfg, semantics,
                                         self.steps_per_epoch, device=self.device)
        return self._fits[key]

    def metrics(self, model: str, fraction: float, captions: int,
                ablation: str = "Full model") -> dict[str, float]:
        """Test metrics of a run (``i2t_r1`` ... ``rsum``)."""
        from xmrlib.evaluation import evaluate

        key = self._key(model, fraction, captions, ablation)
        if key not in self._metrics:
            result = self.fit(model, fraction, captions, ablation)
            with torch.no_grad():
                metrics, sims = evaluate(result.model, self.test, protocol=self.protocol,
                                         device=self.device, return_sims=True)
            self._metrics[key] = {k: float(v) for k, v in metrics.items()}
            if self.protocol == "1k":  # one matrix over the whole split: keep what bootstraps need
                self._shares[key] = rsum_per_image(sims, self.test.captions_per_image)
        return self._metrics[key]

    @staticmethod
    def _key(model: str, fraction: float, captions: int, ablation: str = "Full model") -> tuple:
        """Cache key of a run (the ablation only names A3VSE runs)."""
        return (model, float(fraction), int(captions), ablation if model == A3VSE.name else "")

    def _rsum_shares(self, run: tuple) -> np.ndarray:
        """Each test image's share of rsum for a run (a tuple of :meth:`fit` arguments), from
        the evaluation :meth:`metrics` made (the 1K protocol) or a 1K evaluation of its own."""
        from xmrlib.evaluation import evaluate

        key = self._key(*run)
        if key not in self._shares:
            model = self.fit(*run).model  # trains outside no_grad if the run is new
            with torch.no_grad():
                _, sims = evaluate(model, self.test, protocol="1k", device=self.device,
                                   return_sims=True)
            self._shares[key] = rsum_per_image(sims, self.test.captions_per_image)
        return self._shares[key]

    def paired_bootstrap(self, run_a: tuple, run_b: tuple, n_boot: int = 2000
                         ) -> dict[str, float]:
        """Paired bootstrap over the test images of ``rsum``: run ``a`` minus run ``b`` (each a
        tuple of :meth:`fit` arguments). Both runs answer the same queries; resampling images
        (each with its captions, so that one image's queries stay together) gives the spread
        of the difference that is due to the test set, not to training."""
        diff = self._rsum_shares(run_a) - self._rsum_shares(run_b)  # (n_images,)
        rng = np.random.default_rng(self.seed)
        boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean()
                         for _ in range(n_boot)])
        return {"delta": float(diff.mean()), "ci_low": float(np.percentile(boot, 2.5)),
                "ci_high": float(np.percentile(boot, 97.5)),
                "p_b_better": float((boot < 0).mean())}


def rsum_per_image(sims: Any, captions_per_image: int = 5) -> np.ndarray:
    """Each image's share of ``rsum``: 100 x (its i2t hits at 1, 5, 10 plus the mean t2i hits
    at 1, 5, 10 of its captions), (n_img,). Its mean over the images is the ``rsum`` of
    ``xmrlib.evaluation.recall_metrics(sims)``, so resampling images resamples ``rsum``."""
    from xmrlib.evaluation import ranks

    r_i2t, r_t2i = ranks(sims, captions_per_image)
    ks = np.array([1, 5, 10])
    i2t = (r_i2t[:, None] < ks).sum(axis=1)  # (N,)
    t2i = (r_t2i[:, None] < ks).sum(axis=1).reshape(-1, captions_per_image).mean(axis=1)
    return 100.0 * (i2t + t2i)  # (5N,) -> (N, cpi) -> (N,) for t2i


def paper_row_id(table: str, method_prefix: str) -> str | None:
    """Row id of the first A3VSE-paper row of ``table`` whose method starts with the prefix."""
    from xmrlib.papers import paper_rows

    rows = paper_rows("a3vse2019", table)
    hits = rows[rows["method"].str.startswith(method_prefix)]
    return None if hits.empty else str(hits.iloc[0]["row_id"])

"""Kiros et al. 2014, visual-semantic embedding, and the dual-encoder base it shares with VSE++.

Kiros, Salakhutdinov, Zemel. *Unifying visual-semantic embeddings with multimodal neural
language models.* arXiv:1411.2539, 2014. An image feature ``v`` is projected linearly,
``x = W_I v``; a sentence is read by an LSTM whose last hidden state is the sentence vector
``s``; both live in one ``embed_size``-dimensional space and are trained with a pairwise
ranking loss *summed* over all contrastive examples of a mini-batch (both directions, margin
``alpha``).

Choices (stated, as issue 10 asks):

* **LSTM.** The paper describes an LSTM sentence encoder; the authors' released code
  (``ryankiros/visual-semantic-embedding``) uses a GRU. We follow the paper (``rnn="lstm"``);
  VSE++ (:mod:`xmrlib.models.vsepp`) uses the GRU.
* **Normalisation.** Captions are l2-normalised. As in the authors' code, image embeddings are
  *not* normalised in training (the loss scores ``W_I v . s``), and they are normalised at test
  time, where the score is the cosine similarity of the paper (``image_norm=False,
  eval_image_norm=True``; the module's ``training`` flag selects which applies). The VSE0 of
  the VSE++ authors' code (``fartashf/vsepp``, ``--no_imgnorm``) leaves images unnormalised in
  both (``eval_image_norm=False``); VSE++ normalises them in both.
* **Region features** are mean-pooled over the valid regions before the projection (these are
  global models), see :class:`~xmrlib.models.common.GlobalImageEncoder`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from xmrlib.losses import hinge_triplet_loss
from xmrlib.models.common import (GlobalImageEncoder, RNNTextEncoder, autocast_off,
                                  full_precision, l2norm)
from xmrlib.vocab import Vocabulary

#: all-gathers a (n, d) tensor over ranks -> (N, d), keeping the gradient of the local part
Gather = Callable[[Tensor], Tensor]


class DualEncoder(nn.Module):
    """Image projection + recurrent caption encoder scored by an inner product.

    ``max_violation`` picks the loss: False sums the hinge over every negative of the batch
    (VSE0, Kiros), True keeps only the hardest negative (VSE++). ``warmup`` is the fraction of
    the training run (``progress`` in ``[0, 1)``) that uses the sum loss before switching to the
    max violation, as VSE infinity (Chen et al. 2021) warms up; 0 means no warm-up.
    ``image_norm`` l2-normalises image embeddings in training mode, ``eval_image_norm`` in
    evaluation mode (``None``: as in training).
    """

    name = "dual"

    def __init__(self, vocab: dict, img_dim: int, embed_size: int = 1024, word_dim: int = 300,
                 margin: float = 0.2, rnn: str = "lstm", num_layers: int = 1,
                 image_norm: bool = False, max_violation: bool = False,
                 warmup: float = 0.0, eval_image_norm: bool | None = None) -> None:
        super().__init__()
        if not 0.0 <= warmup <= 1.0:
            raise ValueError(f"warmup must be a fraction of training in [0, 1], got {warmup}")
        self.config: dict[str, Any] = dict(
            vocab=vocab, img_dim=img_dim, embed_size=embed_size, word_dim=word_dim,
            margin=margin, rnn=rnn, num_layers=num_layers, image_norm=image_norm,
            max_violation=max_violation, warmup=warmup, eval_image_norm=eval_image_norm)
        self.vocab = Vocabulary.from_dict(vocab)
        self.tokenize = self.vocab
        self.margin = margin
        self.max_violation = max_violation
        self.warmup = warmup
        self.image_norm = image_norm
        self.eval_image_norm = image_norm if eval_image_norm is None else eval_image_norm
        self.img_enc = GlobalImageEncoder(img_dim, embed_size, normalize=False)
        self.txt_enc = RNNTextEncoder(len(self.vocab), word_dim, embed_size, rnn=rnn,
                                      num_layers=num_layers)

    def encode_images(self, images: Tensor, n_regions: Tensor | None = None) -> Tensor:
        """(n, R, D) regions (mean-pooled over the first ``n_regions``) or (n, D) -> (n, e),
        normalised when ``image_norm`` (training mode) / ``eval_image_norm`` (eval mode) says."""
        emb = self.img_enc(images, n_regions)
        return l2norm(emb) if (self.image_norm if self.training else self.eval_image_norm) else emb

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(n, L) padded tokens -> (n, e) l2-normalised last RNN states (padding ignored)."""
        _, sentence = self.txt_enc(tokens, lengths)
        return l2norm(sentence)

    def similarity(self, img_emb: Tensor, cap_emb: Tensor, cap_lens: Tensor | None = None,
                   img_lens: Tensor | None = None) -> Tensor:
        """Inner products (n_img, n_cap), in float32 outside autocast; cosine when both sides
        are normalised."""
        with autocast_off(img_emb):
            return full_precision(img_emb) @ full_precision(cap_emb).t()

    def uses_max_violation(self, progress: float) -> bool:
        """True when the hardest-negative loss applies at this point of training."""
        return self.max_violation and progress >= self.warmup

    def loss(self, batch: dict[str, Tensor], progress: float,
             gather: Gather | None = None) -> tuple[Tensor, dict[str, float]]:
        """Hinge triplet loss of a batch; ``gather`` (DDP) makes the negatives global."""
        img = self.encode_images(batch["images"], batch.get("n_regions"))
        cap = self.encode_captions(batch["tokens"], batch["lengths"])
        return self.loss_from_embeddings(img, cap, progress, gather)

    def loss_from_embeddings(self, img: Tensor, cap: Tensor, progress: float,
                             gather: Gather | None = None) -> tuple[Tensor, dict[str, float]]:
        """Loss over the (global, if ``gather``) batch: image k matches caption k. Scores and
        loss in float32, outside autocast (:func:`~xmrlib.models.common.autocast_off`)."""
        if gather is not None:
            img, cap = gather(img), gather(cap)  # (b, e) -> (B, e) on every rank
        max_violation = self.uses_max_violation(progress)
        with autocast_off(img):
            # (B, B), positives on the diagonal
            scores = self.similarity(full_precision(img), full_precision(cap))
            loss = hinge_triplet_loss(scores, margin=self.margin, max_violation=max_violation)
        return loss, {"max_violation": float(max_violation)}


class KirosVSE(DualEncoder):
    """Kiros et al. 2014: linear image projection, LSTM, sum of hinges; images unnormalised in
    training, cosine similarity at test time.

    Defaults are the paper's (embedding and LSTM 1024, word vectors 300, margin 0.2).
    """

    name = "vse"

    def __init__(self, vocab: dict, img_dim: int, embed_size: int = 1024, word_dim: int = 300,
                 margin: float = 0.2, rnn: str = "lstm", num_layers: int = 1,
                 image_norm: bool = False, max_violation: bool = False,
                 warmup: float = 0.0, eval_image_norm: bool | None = True) -> None:
        super().__init__(vocab, img_dim, embed_size, word_dim, margin, rnn, num_layers,
                         image_norm, max_violation, warmup, eval_image_norm)


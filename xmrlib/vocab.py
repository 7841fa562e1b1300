"""Word vocabulary: the official vocabulary file of a data set when there is one, else built
from the *training* captions only; saved as JSON.

SCAN and vsepp ship their vocabularies (``vocab/{data}_vocab.json`` in SCAN's release; vsepp's
are pickles, which this module does not unpickle): the words of the train and dev captions seen
at least 4 times (their ``vocab.py``, ``threshold=4``). :func:`dataset_vocabulary` uses the
official JSON file when it is present and otherwise applies the same count rule to the train
captions alone (so no dev word shapes the model), and says which it did. The vsepp raw-image
vocabulary was built from all splits (test words leaked into training); ``Vocabulary.build`` only
ever sees the captions it is given.

Tokenisation is a lowercase regular expression (no NLTK data download): Unicode letters and
digits are kept ("café" stays "café"), punctuation is dropped, and English clitics are split off
as NLTK's Treebank tokenizer does ("dog's" -> "dog", "'s"; "isn't" -> "is", "n't"), so the words
match the official vocabularies, which were built with ``nltk.word_tokenize``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, START, END, UNK)
#: A word: letters and digits of any script (``[^\W_]`` is ``\w`` without the underscore).
_WORD = re.compile(r"[^\W_]+")
#: The same with English clitics split off (n't before its word first, as the Treebank
#: tokenizer does); used only for text with an apostrophe, the rare and slower case.
_WORD_CLITIC = re.compile(r"[^\W_]+?(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lowercase words and numbers of ``text`` (NFC-normalised; punctuation dropped, clitics
    split: ``"The dog's café isn't"`` -> ``the dog 's café is n't``)."""
    text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return (_WORD_CLITIC if "'" in text else _WORD).findall(text)


class Vocabulary:
    """Token <-> id mapping with ``<pad>=0 <start>=1 <end>=2 <unk>=3``."""

    def __init__(self, words: Iterable[str]) -> None:
        self.itos: list[str] = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1,
              threshold: int | None = None) -> "Vocabulary":
        """Vocabulary of the words seen at least ``min_count`` times (sorted, reproducible).

        ``threshold`` is vsepp's name for ``min_count`` and overrides it when given.
        """
        min_count = threshold if threshold is not None else min_count
        counts = Counter(w for c in captions for w in tokenize(c))
        return cls(sorted(w for w, n in counts.items() if n >= min_count))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of ``<start> words <end>``; unknown words map to ``<unk>``."""
        unk = self.stoi[UNK]
        return [self.stoi[START], *(self.stoi.get(w, unk) for w in tokenize(text)), self.stoi[END]]

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` without the special tokens (except ``<unk>``)."""
        return " ".join(self.itos[i] for i in ids if self.itos[i] not in (PAD, START, END))

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids ``(n, L)`` (0 = ``<pad>``) and lengths ``(n,)`` including start/end."""
        seqs = [self.encode(c) for c in captions]
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        tokens = np.zeros((len(seqs), int(lengths.max()) if seqs else 0), dtype=np.int64)
        for i, s in enumerate(seqs):  # numpy rows: a third of the time of a tensor per caption
            tokens[i, : len(s)] = s
        return torch.from_numpy(tokens), torch.from_numpy(lengths)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the word list in id order)."""
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocabulary":
        """Inverse of :meth:`to_dict`; checks the special tokens are in place."""
        if not isinstance(d, dict) or not isinstance(d.get("itos"), list):
            raise ValueError("vocabulary dict must be {'itos': [word, ...]}, got "
                             f"{str(d)[:60]}")
        itos = list(d["itos"])
        if tuple(itos[:4]) != SPECIALS:
            raise ValueError(f"vocabulary dict must start with {SPECIALS}, got {itos[:4]}")
        return cls(itos[4:])

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (atomically: a kill never leaves half a file)."""
        from xmrlib.utils import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def from_official(cls, d: dict[str, Any]) -> "Vocabulary":
        """A vocabulary in SCAN's JSON format (``{"word2idx": {word: id}, "idx2word": {"id":
        word}, "idx": n}``, kuanghuei/SCAN ``vocab.py``), keeping its ids; checks that the ids
        run 0..n-1 once each, that the two maps agree, and that the special tokens come first."""
        w2i = d.get("word2idx") if isinstance(d, dict) else None
        if not isinstance(w2i, dict) or not all(isinstance(i, int) for i in w2i.values()):
            raise ValueError("expected SCAN's format {'word2idx': {word: id}, 'idx2word': "
                             "{id: word}, 'idx': n}")
        itos = sorted(w2i, key=w2i.__getitem__)
        if [w2i[w] for w in itos] != list(range(len(itos))):
            raise ValueError(f"word2idx ids must run 0..{len(itos) - 1} once each")
        i2w = d.get("idx2word", {})
        bad = [k for k, w in i2w.items() if not str(k).isdigit() or w2i.get(w) != int(k)]
        if bad or d.get("idx", len(itos)) != len(itos):
            raise ValueError(f"idx2word / idx disagree with word2idx (first: {bad[:1]}, "
                             f"idx {d.get('idx')} for {len(itos)} words)")
        if tuple(itos[:4]) != SPECIALS:
            raise ValueError(f"ids 0-3 must be {SPECIALS}, got {tuple(itos[:4])}")
        return cls(itos[4:])

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        """Read a vocabulary JSON file: written by :meth:`save`, or an official one in SCAN's
        format (:meth:`from_official`). Errors name the file and what was expected."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no vocabulary file")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(d, dict) and "word2idx" in d:
                return cls.from_official(d)
            return cls.from_dict(d)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"{path}: not a vocabulary file (xmrlib's {{'itos': [...]}} or "
                             f"SCAN's vocab/{{data}}_vocab.json): {e}") from e


def official_vocab_path(folder: str | Path, dataset: str) -> Path | None:
    """The official vocabulary ``{dataset}_vocab.json`` of a precomp folder, if present.

    SCAN's release keeps ``data/{dataset}/`` beside ``vocab/{dataset}_vocab.json``; the file is
    also found inside the data set's folder or in a ``vocab/`` folder within the data root.
    """
    folder, name = Path(folder), f"{dataset}_vocab.json"
    for candidate in (folder / name, folder / "vocab" / name, folder.parent / "vocab" / name,
                      folder.parent.parent / "vocab" / name):
        if candidate.is_file():
            return candidate
    return None


def unknown_rate(vocab: Vocabulary, captions: list[str], sample: int = 5000) -> float:
    """Fraction of the word tokens of the first ``sample`` captions that map to ``<unk>``."""
    words = [w for c in captions[:sample] for w in tokenize(c)]
    return sum(w not in vocab.stoi for w in words) / max(1, len(words))


def dataset_vocabulary(captions: list[str], folder: str | Path | None, dataset: str,
                       min_count: int = 1) -> tuple[Vocabulary, str]:
    """The vocabulary of a training run and one sentence that says where it came from.

    Real data (``folder`` of ``f30k_precomp``/``coco_precomp``): the official vocabulary file
    when :func:`official_vocab_path` finds one, else :meth:`Vocabulary.build` of the training
    ``captions`` with ``min_count`` (4 in the ``full`` profile, the official rule). Shapes
    (``folder`` None or no file): always built.
    """
    path = official_vocab_path(folder, dataset) if folder is not None else None
    if path is not None:
        vocab = Vocabulary.load(path)
        return vocab, (f"official vocabulary file {path.parent.name}/{path.name} ({len(vocab)} "
                       f"tokens; {100 * unknown_rate(vocab, captions):.1f}% of training words "
                       "map to <unk>)")
    vocab = Vocabulary.build(captions, min_count=min_count)
    where = (f"; no official {dataset}_vocab.json beside the data" if dataset != "shapes"
             else "")
    return vocab, (f"built from the training captions: {len(vocab)} tokens, words seen at "
                   f"least {min_count} time{'s' if min_count != 1 else ''}{where}")

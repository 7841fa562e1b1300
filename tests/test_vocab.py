import json

import pytest
import torch

from xmrlib.vocab import Vocabulary, dataset_vocabulary, tokenize


def test_tokenize_lowercase_words():
    assert tokenize("A Red circle, left-of the BLUE square!") == \
        ["a", "red", "circle", "left", "of", "the", "blue", "square"]


def test_train_only_vocabulary_maps_dev_words_to_unk():
    v = Vocabulary.build(["a red circle", "a blue square"])
    assert v.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert len(v) == 4 + 5
    ids = v.encode("a purple circle")          # "purple" only in dev
    assert ids == [1, v.stoi["a"], 3, v.stoi["circle"], 2]
    assert v.decode(ids) == "a <unk> circle"


def test_min_count():
    v = Vocabulary.build(["a a b", "a c"], min_count=2)
    assert v.itos[4:] == ["a"]
    assert Vocabulary.build(["a a b", "a c"], threshold=1).itos[4:] == ["a", "b", "c"]


def test_call_pads_with_zero_and_counts_start_end():
    v = Vocabulary.build(["a red circle", "blue"])
    tokens, lengths = v(["a red circle", "blue"])
    assert lengths.tolist() == [5, 3]
    assert tokens.shape == (2, 5) and tokens.dtype == torch.long
    assert tokens[1].tolist() == [1, v.stoi["blue"], 2, 0, 0]


def test_json_round_trip(tmp_path):
    v = Vocabulary.build(["x y z", "y"])
    v.save(tmp_path / "v.json")
    w = Vocabulary.load(tmp_path / "v.json")
    assert w.itos == v.itos and Vocabulary.from_dict(v.to_dict()).stoi == v.stoi
    assert (tmp_path / "v.json").read_text().startswith("{")


def test_call_dtypes_and_empty_batch():
    v = Vocabulary.build(["a red circle"], min_count=1)
    tokens, lengths = v(["a red circle", "red"])
    assert tokens.dtype == lengths.dtype == torch.long
    assert tokens.tolist() == [v.encode("a red circle"), v.encode("red") + [0, 0]]
    empty_tokens, empty_lengths = v([])
    assert empty_tokens.shape == (0, 0) and empty_lengths.shape == (0,)


def test_tokenize_keeps_non_ascii_letters_and_splits_clitics():
    assert tokenize("Un café naïve à Zürich") == ["un", "café", "naïve", "à", "zürich"]
    assert tokenize("cafe\u0301") == ["café"]                        # NFC: one word, not "cafe"
    assert tokenize("The dog's ball isn't red; they're 3") == \
        ["the", "dog", "'s", "ball", "is", "n't", "red", "they", "'re", "3"]  # as nltk's Treebank
    assert Vocabulary.build(["un café"]).decode(Vocabulary.build(["un café"]).encode("café")) == "café"


def _scan_vocab_file(path, words):
    itos = ["<pad>", "<start>", "<end>", "<unk>", *words]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"word2idx": {w: i for i, w in enumerate(itos)},
                                "idx2word": {str(i): w for i, w in enumerate(itos)},
                                "idx": len(itos)}))
    return path


def test_official_scan_vocabulary_file_keeps_its_ids(tmp_path):
    v = Vocabulary.load(_scan_vocab_file(tmp_path / "f30k_precomp_vocab.json",
                                         ["zebra", "a", "café"]))
    assert v.itos[4:] == ["zebra", "a", "café"] and v.stoi["café"] == 6   # not re-sorted
    bad = tmp_path / "bad_vocab.json"
    bad.write_text(json.dumps({"word2idx": {"<pad>": 0, "a": 2}, "idx2word": {}, "idx": 2}))
    with pytest.raises(ValueError, match=r"bad_vocab.json: not a vocabulary file .*ids must run"):
        Vocabulary.load(bad)


def test_dataset_vocabulary_uses_the_official_file_else_the_same_rule(tmp_path):
    caps = ["a dog runs", "a dog sits", "a dog", "a cat", "zebra"]
    folder = tmp_path / "data" / "f30k_precomp"
    folder.mkdir(parents=True)
    v, said = dataset_vocabulary(caps, folder, "f30k_precomp", min_count=4)
    assert v.itos[4:] == ["a"]                                 # only 'a' is seen 4 times
    assert "built from the training captions" in said and "at least 4 times" in said
    assert "no official f30k_precomp_vocab.json" in said
    _scan_vocab_file(tmp_path / "vocab" / "f30k_precomp_vocab.json", ["dog", "a"])  # SCAN layout
    v, said = dataset_vocabulary(caps, folder, "f30k_precomp", min_count=4)
    assert v.itos[4:] == ["dog", "a"]
    assert said.startswith("official vocabulary file vocab/f30k_precomp_vocab.json (6 tokens")
    assert "36.4% of training words map to <unk>" in said   # 4 of 11: runs sits cat zebra
    assert str(tmp_path) not in said
    v, said = dataset_vocabulary(caps, None, "shapes")
    assert len(v) == 4 + 6 and "no official" not in said     # min count 1

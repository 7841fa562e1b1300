import torch

from xmrlib.vocab import Vocabulary, tokenize


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

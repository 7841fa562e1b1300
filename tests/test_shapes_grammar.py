"""The Shapes caption language: realise -> parse is exact, and the truth oracle equals a plain
brute-force checker on random facts and random scenes (a Monte Carlo check)."""

import itertools

import numpy as np
import pytest

from xmrlib.data import caption_truth
from xmrlib.data import shapes_grammar as g
from xmrlib.data.shapes import split_scenes
from xmrlib.vocab import tokenize


def test_parse_inverts_realise_on_generated_captions():
    scenes, _ = split_scenes(400, 3, "train")
    rng = g.WordRandom(0)
    kinds = {"relation": 0, "inverted": 0, "predicative": 0, "position": 0, "count": 0}
    for sc in scenes:
        for _ in range(5):
            facts, text = g.caption_of(sc, rng)
            assert g.parse(text).canonical() == facts.canonical(), text
            assert g.facts_hold(facts, sc)
            assert g.MIN_WORDS <= len(tokenize(text)) <= g.MAX_WORDS
            assert all(m.colour and m.shape for m in facts.mentions)
            chunks = [k for k, _ in g._chunks(text) if k != "filler"]
            kinds["relation"] += bool(facts.relations)
            kinds["inverted"] += chunks[0] == "rel"
            kinds["predicative"] += chunks[0] == "shape" or (chunks[:2] == ["size", "shape"])
            kinds["position"] += "pos" in chunks
            kinds["count"] += facts.count is not None
    assert min(kinds.values()) > 20, kinds            # every construction is exercised


def _random_facts(rng: np.random.Generator) -> g.Facts:
    """Loose random facts (one or two objects, any attributes), so that many are true of
    random scenes."""
    mentions = []
    for _ in range(int(rng.integers(1, 3))):
        pos = [None, *g.POSITIONS][int(rng.integers(len(g.POSITIONS) + 1))] if rng.random() < 0.3 \
            else None
        mentions.append(g.Mention(
            g.COLOUR_NAMES[int(rng.integers(len(g.COLOUR_NAMES)))],
            g.SHAPE_NAMES[int(rng.integers(4))],               # 4 shapes: more hits
            g.SIZE_NAMES[int(rng.integers(3))] if rng.random() < 0.3 else None,
            *(pos or (None, None))))
    rel = ()
    if len(mentions) == 2 and rng.random() < 0.6:
        rel = ((0, ("left", "right", "above", "below")[int(rng.integers(4))], 1),)
    return g.Facts(tuple(mentions), rel,
                   int(rng.integers(2, 5)) if rng.random() < 0.3 else None,
                   g.BACKGROUND_NAMES[int(rng.integers(3))] if rng.random() < 0.3 else None)


def _naive_truth(facts: g.Facts, scene: dict) -> bool:
    """Brute force over ordered choices of distinct objects, written out plainly."""
    objs = scene["objects"]
    if facts.count is not None and len(objs) != facts.count:
        return False
    if facts.background is not None and scene["background"] != facts.background:
        return False
    for choice in itertools.permutations(objs, len(facts.mentions)):
        ok = True
        for m, o in zip(facts.mentions, choice):
            if o["colour"] != m.colour or o["shape"] != m.shape:
                ok = False
            if m.size is not None and o["size"] != m.size:
                ok = False
            if m.row is not None and o["row"] != m.row:
                ok = False
            if m.col is not None and o["col"] != m.col:
                ok = False
        for a, rel, b in facts.relations:
            oa, ob = choice[a], choice[b]
            if rel == "left" and not oa["col"] < ob["col"]:
                ok = False
            if rel == "right" and not oa["col"] > ob["col"]:
                ok = False
            if rel == "above" and not oa["row"] < ob["row"]:
                ok = False
            if rel == "below" and not oa["row"] > ob["row"]:
                ok = False
        if ok:
            return True
    return False


def test_truth_oracle_matches_brute_force_on_random_scenes():
    """Monte Carlo: random loose facts, written as captions, against random scenes."""
    rng = np.random.default_rng(0)
    words = g.WordRandom(1)
    facts = [_random_facts(rng) for _ in range(400)]
    captions = [g.realise(f, words) for f in facts]
    scenes, _ = split_scenes(300, 11, "dev")
    truth = caption_truth(scenes, captions)
    want = np.array([[_naive_truth(f, sc) for f in facts] for sc in scenes])
    assert np.array_equal(truth, want)
    assert 200 < want.sum() < want.size / 4           # neither vacuous nor trivial


def test_relation_converses_and_chains():
    scene = {"background": "white", "objects": [
        {"colour": "red", "shape": "circle", "size": "small", "row": 0, "col": 0},
        {"colour": "blue", "shape": "square", "size": "large", "row": 1, "col": 1},
        {"colour": "green", "shape": "star", "size": "medium", "row": 2, "col": 2}]}
    f = g.parse("above a blue square there is a red circle to the left of a green star")
    red, blue, green = g.Mention("red", "circle"), g.Mention("blue", "square"), \
        g.Mention("green", "star")
    assert f.canonical() == (frozenset({red, blue, green}),
                             frozenset({(red, "above", blue), (red, "left", green)}), None, None)
    assert g.facts_hold(f, scene)
    # the chain goes on from the subject of the clause-initial relation
    assert not g.facts_hold(g.parse("above a green star there is a blue square to the left of "
                                    "a red circle"), scene)
    assert g.facts_hold(g.parse("a green star below a blue square which is below a red circle"),
                        scene)


def test_unknown_word_is_named():
    with pytest.raises(ValueError, match="'teapot'"):
        g.parse("a red teapot above a blue square")


def test_make_captions_deterministic():
    scenes, _ = split_scenes(10, 0, "test")
    a = [g.make_captions(sc, np.random.default_rng(5)) for sc in scenes]
    b = [g.make_captions(sc, np.random.default_rng(5)) for sc in scenes]
    assert a == b and all(len(set(c)) == 5 for c in a)
